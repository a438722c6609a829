"""The real clients admins use, against a real server on 127.0.0.1 port 0.

Proves, with the installed binaries rather than a model of them:

* netcat-openbsd with no flags (it never half-closes): ``echo -n 'CMD' | nc``
  gets the banner, the reply and the separator, then exits by itself, soon
  after the reply (the one-shot rule);
* half-closing clients (``nc -N``, ``nc -q 1``, socat, a socket that does
  ``shutdown(SHUT_WR)``): pipelined lines are answered in order, a last
  unterminated line is still run, then the server closes;
* netkit telnet in a pseudo-terminal: Ctrl-C (IAC IP + IAC DO TIMING-MARK)
  stops a running stream with ``ERROR: interrupted`` and the session stays
  usable; ``quit`` closes it;
* telnet control bytes from a raw socket get the exact answers the framing
  rules promise;
* an HTTP request piped through nc closes the connection with nothing run;
* the README's one-liner for each netcat (openbsd, traditional, ncat, busybox,
  socat) gets its reply and exits as soon as the server closes; a whole first
  line from nc without flags leaves the session open, as a person typing needs.
"""

import asyncio
import re
import socket
import time

import pytest
from helpers import (
    BANNER,
    SEP,
    SEP_LINE,
    TIMEOUT,
    LineClient,
    need,
    on_terminal,
    running_server,
)

QUICK = 2.5  # seconds: a generous bound for "the client exited by itself, promptly"
IAC, DONT, DO, WONT, WILL, SB, SE = b"\xff", b"\xfe", b"\xfd", b"\xfc", b"\xfb", b"\xfa", b"\xf0"
ECHO, TIMING_MARK, TTYPE, NAWS = b"\x01", b"\x06", b"\x18", b"\x1f"


def reply(text):
    return text.encode() + b"\n" + SEP_LINE


async def run_client(argv, data):
    """Run a client with DATA on its stdin (then EOF, as a shell pipe gives it);
    return (stdout, seconds it took).  It must exit 0 within TIMEOUT."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(data), TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{argv[0]} did not exit within {TIMEOUT}s") from None
    assert process.returncode == 0, (process.returncode, err)
    return out, time.monotonic() - started


def nc(port, *flags):
    return ["nc", *flags, "127.0.0.1", str(port)]


# -- 1. netcat without flags: the one-shot rule ------------------------------------


async def test_nc_without_flags_runs_an_unterminated_one_liner_and_exits():
    need("nc")
    async with running_server() as server:
        port = server.address[1]
        out, took = await run_client(nc(port), b"systemstatus uptime")
        assert re.fullmatch(re.escape(BANNER) + rb"[^\n]*\bup\b[^\n]*load average[^\n]*\n"
                            + re.escape(SEP_LINE), out), out
        assert took < QUICK, f"nc took {took:.2f}s to exit"

        out, took = await run_client(nc(port), b"hostname")
        assert out == BANNER + reply(socket.gethostname())
        assert took < QUICK, f"nc took {took:.2f}s to exit"


# -- 2. half-closing clients -------------------------------------------------------

PIPELINED = (b"testsvc sleep 0.3\nsystemstatus echo second\ntestsvc count 3\n"
             b"systemstatus echo 'last one'")  # no newline: run at EOF
PIPELINED_REPLIES = (reply("slept 0.3") + reply("second") + reply("1\n2\n3")
                     + reply("last one"))


async def test_nc_N_pipelined_lines_answered_in_order_then_closed():
    need("nc")
    async with running_server() as server:
        out, took = await run_client(nc(server.address[1], "-N"), PIPELINED)
        assert out == BANNER + PIPELINED_REPLIES
        assert took < QUICK, "the server did not close after the last reply"


async def test_nc_q_delivers_the_last_unterminated_line():
    # nc -q 1 half-closes like -N, but then always waits out its second before
    # exiting, so how soon it exits says nothing about the server.
    need("nc")
    async with running_server() as server:
        out, _ = await run_client(nc(server.address[1], "-q", "1"), PIPELINED)
        assert out == BANNER + PIPELINED_REPLIES


async def test_socat_half_close():
    # -t 5: socat waits at most this long for the server after its stdin ends
    # (0.5 s by default); exiting well before it proves the server closed.
    need("socat")
    async with running_server() as server:
        argv = ["socat", "-t", "5", "-", f"TCP:127.0.0.1:{server.address[1]}"]
        out, took = await run_client(argv, PIPELINED)
        assert out == BANNER + PIPELINED_REPLIES
        assert took < QUICK, "the server did not close after the last reply"

        out, _ = await run_client(argv, b"systemstatus echo solo")
        assert out == BANNER + reply("solo")


async def test_socket_shutdown_write_still_gets_its_replies():
    async with running_server() as server:
        for data, expected in [
            (b"systemstatus echo one\nsystemstatus echo two", reply("one") + reply("two")),
            (b"systemstatus echo solo", reply("solo")),  # before the one-shot delay
            (b"systemstatus echo crlf\r\n", reply("crlf")),
        ]:
            client = await LineClient.connect(server.address[1])
            try:
                assert client.banner == BANNER
                client.writer.write(data)
                client.writer.write_eof()  # socket.shutdown(SHUT_WR)
                assert await client.read_all() == expected  # read() ends: server closed
            finally:
                await client.close()


# -- 3. netkit telnet in a pseudo-terminal ------------------------------------------

def telnet(port):
    """Real telnet on a pseudo-terminal: yields (process, Terminal)."""
    return on_terminal("telnet", "127.0.0.1", str(port))


async def test_telnet_session_ctrl_c_interrupts_a_stream_and_quit_closes():
    need("telnet")
    async with running_server() as server, telnet(server.address[1]) as (process, terminal):
        await terminal.expect(b"Escape character is '^]'.\n")
        assert await terminal.expect(SEP_LINE) == BANNER

        terminal.type(b"systemstatus echo hi\r")
        assert await terminal.expect(SEP_LINE) == b"systemstatus echo hi\n" + reply("hi")

        terminal.type(b"testsvc forever\r")
        await terminal.expect(b"\ntick 3\n")  # the stream is flowing
        terminal.type(b"\x03")  # Ctrl-C
        await terminal.expect(b"ERROR: interrupted\n" + SEP_LINE)

        # The stream stopped: the session runs the next line (the worker is
        # sequential, so an endless stream would keep it queued forever),
        # and no tick arrives after the interruption.
        terminal.type(b"systemstatus echo after\r")
        after = await terminal.expect(SEP_LINE)
        assert after == b"systemstatus echo after\n" + reply("after"), after

        terminal.type(b"quit\r")
        assert await terminal.expect(SEP_LINE) == b"quit\n" + reply("bye")
        await terminal.expect(b"Connection closed by foreign host.\n")
        await asyncio.wait_for(process.wait(), TIMEOUT)


async def test_kill_closes_an_idle_telnet_session():
    need("telnet")
    async with running_server() as server, telnet(server.address[1]) as (process, terminal):
        serving = asyncio.create_task(server.serve_until_shutdown())
        await terminal.expect(SEP_LINE)  # the banner: the session is open and idle
        admin = await LineClient.connect(server.address[1])
        assert await admin.ask("kill") == "shutting down\n" + SEP
        await terminal.expect(b"Connection closed by foreign host.\n")
        await asyncio.wait_for(process.wait(), TIMEOUT)
        await asyncio.wait_for(serving, TIMEOUT)


# -- 4. telnet control bytes from a raw socket -------------------------------------


async def test_raw_telnet_commands_get_exact_answers(client):
    # Option requests are refused, DO TIMING-MARK is accepted, WONT/DONT need
    # no answer; the answers come before the reply to the line they sit in.
    await client.send(IAC + DO + TTYPE + IAC + WILL + NAWS + IAC + WONT + ECHO
                      + IAC + DONT + ECHO + IAC + DO + TIMING_MARK
                      + b"systemstatus echo x" + IAC + DO + ECHO + b"y\n")
    assert await client.reply() == (IAC + WONT + TTYPE + IAC + DONT + NAWS
                                    + IAC + WILL + TIMING_MARK + IAC + WONT + ECHO
                                    + reply("xy"))

    # A subnegotiation is skipped whole, even inside a word.
    await client.send(b"systemstatus ec" + IAC + SB + TTYPE + b"\x00xterm" + IAC + SE
                      + b"ho sub\n")
    assert await client.reply() == reply("sub")

    # IAC IAC is a literal 0xFF byte in the line: not UTF-8, so nothing runs.
    await client.send(b"systemstatus echo a" + IAC + IAC + b"b\n")
    assert await client.reply() == b"ERROR: line is not valid UTF-8\n" + SEP_LINE

    # CR NUL (telnet's bare carriage return) ends a line, like CR LF.
    await client.send(b"systemstatus echo one\r\x00systemstatus echo two\r\n")
    assert await client.reply() + await client.reply() == reply("one") + reply("two")

    # IAC IP is an interrupt: the partial line before it is thrown away.
    await client.send(b"kill" + IAC + b"\xf4" + b"systemstatus echo kept\n")
    assert await client.reply() == reply("kept")


# -- 5. HTTP through netcat --------------------------------------------------------


async def test_http_request_is_closed_unanswered_and_runs_nothing():
    need("nc")
    async with running_server() as server:
        port = server.address[1]
        request = b"POST / HTTP/1.1\r\nHost: x\r\n\r\nkill\n"
        out, took = await run_client(nc(port, "-N"), request)
        assert out == BANNER  # the banner went out on connect; nothing after it
        assert took < QUICK

        assert not server.manager.shutdown_requested.is_set(), "kill ran"
        client = await LineClient.connect(port)
        try:
            assert await client.ask("systemstatus echo alive") == "alive\n" + SEP
        finally:
            await client.close()


# -- 6. the README's one-liners, with each netcat -----------------------------------

SLOW = b"testsvc sleep 0.3"  # its reply comes after the client's input has ended


def host_port(port):
    return ["127.0.0.1", str(port)]


ONE_LINERS = {  # as the README shows them: (tool, argv for a port, what is piped in)
    "any netcat, no newline": ("nc", lambda port: nc(port), SLOW),
    "netcat-openbsd -N": ("nc", lambda port: nc(port, "-N"), SLOW + b"\n"),
    "netcat-traditional, no newline": (
        "nc.traditional", lambda port: ["nc.traditional", *host_port(port)], SLOW),
    "netcat-traditional -q": (
        "nc.traditional", lambda port: ["nc.traditional", "-q", "30", *host_port(port)],
        SLOW + b"\n"),
    "ncat": ("ncat", lambda port: ["ncat", *host_port(port)], SLOW + b"\n"),
    "busybox nc": ("busybox", lambda port: ["busybox", "nc", *host_port(port)], SLOW + b"\n"),
    "socat -t": ("socat", lambda port: ["socat", "-t", "30", "-", f"TCP:127.0.0.1:{port}"],
                 SLOW + b"\n"),
}


@pytest.mark.parametrize("form", ONE_LINERS)
async def test_each_netcat_one_liner_gets_its_reply_and_exits_when_the_server_closes(form):
    # -q 30 and -t 30 are only upper bounds: exiting well before them proves
    # that the server closed the connection after the reply.
    tool, argv, data = ONE_LINERS[form]
    need(tool)
    async with running_server() as server:
        out, took = await run_client(argv(server.address[1]), data)
        assert out == BANNER + reply("slept 0.3")
        assert took < TIMEOUT / 2, f"{form} took {took:.2f}s to exit"


async def test_nc_without_flags_stays_open_after_a_whole_line_as_a_person_typing_needs():
    # A person at nc ends each line with Enter and waits: the same bytes as
    # `echo 'cmd' | nc` sends, so that form cannot be told apart and hangs.
    need("nc")
    async with running_server(oneshot_delay=0.05) as server:
        process = await asyncio.create_subprocess_exec(
            *nc(server.address[1]), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            async def answer(line, expected):
                process.stdin.write(line)
                await process.stdin.drain()
                got = await asyncio.wait_for(process.stdout.readexactly(len(expected)), TIMEOUT)
                assert got == expected

            await answer(b"systemstatus echo one\n", BANNER + reply("one"))
            await asyncio.sleep(0.3)  # six one-shot delays of silence: nothing may happen
            assert process.returncode is None
            await answer(b"systemstatus echo two\n", reply("two"))
            process.stdin.write(b"quit\n")
            process.stdin.close()  # netcat-openbsd exits once both sides have ended
            assert (await asyncio.wait_for(process.stdout.read(), TIMEOUT)).startswith(b"bye\n")
            await asyncio.wait_for(process.wait(), TIMEOUT)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
