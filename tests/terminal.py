"""A pseudo-terminal for tests that drive a real interactive program (telnet, tshell)."""

import asyncio
import contextlib
import os
import sys

from conftest import TIMEOUT

# Make the pty telnet's controlling terminal, so Ctrl-C there is SIGINT for telnet.
LOGIN_TTY = "import os, sys; os.login_tty(0); os.execvp(sys.argv[1], sys.argv[1:])"


class Terminal:
    """The master side of a pty: collects output, waits for text in it."""

    def __init__(self, fd):
        self.fd, self.output, self.pos, self.closed = fd, bytearray(), 0, False
        self.changed = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(fd, self._readable)

    def _readable(self):
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: every slave descriptor is closed
            chunk = b""
        self.output += chunk
        if not chunk:
            self.closed = True
            self.loop.remove_reader(self.fd)
        self.changed.set()

    def type(self, data):
        os.write(self.fd, data)

    async def expect(self, needle):
        """Output (CRs removed) from where the last expect stopped, through NEEDLE."""
        deadline = self.loop.time() + TIMEOUT
        for _ in range(100_000):
            text = self.output.replace(b"\r", b"")
            found = text.find(needle, self.pos)
            if found >= 0:
                seen, self.pos = bytes(text[self.pos:found + len(needle)]), found + len(needle)
                return seen
            left = deadline - self.loop.time()
            if self.closed or left <= 0:
                break
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        raise AssertionError(f"never saw {needle!r}; after {bytes(text[:self.pos])[-200:]!r} "
                             f"got {bytes(text[self.pos:])[-500:]!r}")

    def close(self):
        if not self.closed:
            self.loop.remove_reader(self.fd)
        os.close(self.fd)


@contextlib.asynccontextmanager
async def on_terminal(*argv, **options):
    """ARGV run on a pseudo-terminal that is its controlling terminal (so Ctrl-C
    there is SIGINT); yields (process, Terminal) and kills it if still running."""
    master, slave = os.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LOGIN_TTY, *argv,
            stdin=slave, stdout=slave, stderr=slave, **options)
    finally:
        os.close(slave)
    terminal = Terminal(master)
    try:
        yield process, terminal
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        terminal.close()
