"""The yardstick: the least asyncio server that speaks smanager's wire format.

It is what a competent person would write to answer these lines and nothing
else: an ``asyncio.Protocol`` that splits what arrives on ``b"\\n"`` and
answers all the complete lines of one read with ONE ``transport.write`` (as
../shared/perf/ref/ref_protocol.py does, and as smanager does since it holds
a read's replies for one write).  No framing rules beyond that, no queue, no
task per request, no threads.  smanager does much more per line (telnet,
one-shot lines, ordering, time limits, threads for blocking commands), so the
benchmark asks how close it gets to this, not whether it beats it.

Lines it answers (anything else gets a one-line error, like smanager would):
    systemstatus echo WORDS...   -> WORDS joined by one space
    benchsvc ping                -> pong   (the blocking-command scenario,
                                            computed inline: no thread)

    python bench/reference_server.py --port 0 [--backlog 1024]
prints ``listening on 127.0.0.1:PORT`` on stderr; SIGTERM or Ctrl-C stops it.
"""

import argparse
import asyncio
import signal
import sys

SEPARATOR = b"-" * 50 + b"\n"
# Byte for byte what smanager's protocol.render_banner() sends with the bundled
# services; bench/run.py checks that the two still agree.
BANNER = (b"*" * 50 + b"\nService Manager\n" + b"*" * 50 + b"\n"
          b"Available Services:\n-monitor\n-proc\n-scrapman\n-scripts\n-systemstatus\n"
          + SEPARATOR)
PONG = b"pong\n" + SEPARATOR
UNKNOWN = b"ERROR: unknown command\n" + SEPARATOR


def answer(line):
    """One line (without its newline) -> the reply bytes; a blank line gets b""."""
    words = line.split()
    if not words:
        return b""
    if len(words) >= 2 and words[0] == b"systemstatus" and words[1] == b"echo":
        text = b" ".join(words[2:])
        return (text + b"\n" + SEPARATOR) if text else SEPARATOR
    if words == [b"benchsvc", b"ping"]:
        return PONG
    return UNKNOWN


class Reference(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.partial = b""  # an unterminated line carried over to the next read
        transport.write(BANNER)

    def data_received(self, data):
        if self.partial:
            data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        if lines:  # one send() for everything this read completed
            self.transport.write(b"".join([answer(line) for line in lines]))


async def main(host, port, backlog):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Reference, host, port, reuse_address=True,
                                      backlog=backlog)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()
    print(f"reference: listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backlog", type=int, default=1024,
                        help="listen backlog, as smanager's default (asyncio's is 100)")
    options = parser.parse_args()
    asyncio.run(main(options.host, options.port, options.backlog))
