"""What a request means and how it runs.  No sockets here.

manager    the one entry: Manager.answer(raw line, peer) -> a reply, or the job left to do
catalog    what is loaded now; words -> a command
commands   how a class's methods become commands (the rules for service authors)
helptext   help in the seed's layout
builtins   help, kill, restart, quit, mode, login...
runner     running a bound command: threads, the loop, streams, time limits
eager      running a coroutine's first step at once, the rest in a task
roster     loading, starting, restarting and stopping services
loader     finding service classes in files
lifecycle  one service's start and stop hooks, bounded in time
"""
