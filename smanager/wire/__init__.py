"""The wire, sans I/O: bytes in, lines and replies out.

framing   bytes -> lines and telnet events (Ctrl-C, option refusals, overflow)
protocol  a line -> a Request; replies, the banner and the separator as bytes
formats   the two reply formats of a connection: text (the seed's) and JSON
errors    every error a client can see, as one line
address   host and port as people write them

Nothing here imports the rest of smanager, asyncio or sockets: tests feed
bytes and strings and assert bytes and strings.
"""
