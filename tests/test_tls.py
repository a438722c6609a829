"""TLS on the TCP listener, and mutual TLS: real certificates made with openssl."""

import asyncio
import re
import socket
import ssl
import struct
import subprocess

import pytest
from conftest import TIMEOUT, need, running_server
from test_tshell import tshell

from smanager.client import AsyncClient, CannotConnect, Client, TimedOut, tls_context


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True,
                   timeout=TIMEOUT * 3)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA; a server certificate for 127.0.0.1; client certificates: alice's,
    an expired one, and one from a CA nobody trusts."""
    need("openssl")
    d = tmp_path_factory.mktemp("pki")
    key = ["-newkey", "rsa:2048", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *key, "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                "-subj", f"/CN={ca}", "-days", "2", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ca, days, extra in [("server", "ca", "2", ["-extfile", "san.ext"]),
                                  ("alice", "ca", "2", []), ("expired", "ca", "-1", []),
                                  ("stranger", "other-ca", "2", [])]:
        cn = "localhost" if name == "server" else name
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={cn}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", days, *extra, cwd=d)
    return d


def tls_settings(pki, mutual=False):
    settings = {"tls_cert": str(pki / "server.pem"), "tls_key": str(pki / "server.key")}
    if mutual:
        settings["tls_client_ca"] = str(pki / "ca.pem")
    return settings


def client_ssl(pki, who=None):
    return tls_context(str(pki / "ca.pem"), who and str(pki / f"{who}.pem"),
                              who and str(pki / f"{who}.key"))


def ask(port, pki, who=None, line="testsvc add 1 2"):
    with Client("127.0.0.1", port, ssl=client_ssl(pki, who), timeout=TIMEOUT) as client:
        return client.call(line).value


def test_the_clients_talk_tls(server_thread, pki):
    port = server_thread.start(**tls_settings(pki))
    assert ask(port, pki) == 3
    async def async_ask():
        async with AsyncClient("127.0.0.1", port, ssl=client_ssl(pki)) as client:
            return (await client.call("systemstatus echo secure")).value
    assert asyncio.run(async_ask()) == "secure"
    assert tshell(f"127.0.0.1:{port}", "--tls-ca", str(pki / "ca.pem"), "-c",
                  "systemstatus echo hi") == (0, "hi\n", "")
    status, out, _ = tshell("--hosts", f"127.0.0.1:{port}", "--tls-ca", str(pki / "ca.pem"),
                            "-c", "testsvc add 2")
    assert (status, out) == (0, f"127.0.0.1:{port}: 3\n")


def test_a_client_reconnects_over_tls_only_when_the_server_closed(server_thread, pki):
    port = server_thread.start(**tls_settings(pki))
    with Client("127.0.0.1", port, ssl=client_ssl(pki), timeout=TIMEOUT) as client:
        first = client.call("testsvc whoami").value
        assert client.call("testsvc whoami").value == first.replace("asked 1", "asked 2")


def test_openssl_s_client_gets_answers(server_thread, pki):
    port = server_thread.start(**tls_settings(pki))
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile",
         str(pki / "ca.pem"), "-verify_return_error", "-quiet"],
        input=b"systemstatus echo over tls\nquit\n", capture_output=True, timeout=TIMEOUT * 3)
    assert b"Service Manager" in done.stdout
    assert b"\nover tls\n" + b"-" * 50 + b"\nbye\n" in done.stdout


def test_a_plain_client_at_a_tls_port_gets_a_clear_error(server_thread, pki):
    port = server_thread.start(**tls_settings(pki))
    with pytest.raises(TimedOut, match="sent no greeting within 0.3 s .a TLS server waits"):
        Client("127.0.0.1", port, timeout=0.3).connect()


def test_mutual_tls_names_the_user_in_the_audit_trail(server_thread, pki, tmp_path):
    trail = tmp_path / "audit.log"
    port = server_thread.start(**tls_settings(pki, mutual=True), audit_log=str(trail))
    assert ask(port, pki, "alice") == 3
    server_thread.stop(port)
    assert re.search(r" user=alice ok [\d.]+ms \"testsvc add 1 2\"$", trail.read_text())


@pytest.mark.parametrize("who", [None, "expired", "stranger"])
def test_mutual_tls_refuses_a_missing_expired_or_foreign_certificate(server_thread, pki, who):
    port = server_thread.start(**tls_settings(pki, mutual=True))
    with pytest.raises(CannotConnect):
        ask(port, pki, who)
    assert ask(port, pki, "alice") == 3  # and goes on serving those it should


@pytest.mark.parametrize(("settings", "message"), [
    ({"tls_cert": "x.pem"}, "TLS needs --tls-cert and --tls-key together"),
    ({"tls_cert": "/nonexistent.pem", "tls_key": "/nonexistent.key"},
     "cannot use the TLS certificate or key"),
])
async def test_tls_settings_that_cannot_work_are_config_errors(settings, message):
    from smanager.config import ConfigError
    with pytest.raises(ConfigError, match=message):
        async with running_server(**settings):
            pass


DASHES = b"-" * 50 + b"\n"


def shaken_hands(sock, pki):
    """A TLS client over memory buffers whose handshake is done but whose last
    handshake bytes are still unsent: what it writes next joins them."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client_ssl(pki).wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    for _ in range(20):  # a handshake takes a few round trips, never twenty
        try:
            tls_client.do_handshake()
            return tls_client, incoming, outgoing
        except ssl.SSLWantReadError:
            if outgoing.pending:
                sock.sendall(outgoing.read())
            incoming.write(sock.recv(65536))
    pytest.fail("the TLS handshake did not finish")


def test_a_line_sent_with_the_last_handshake_bytes_is_answered(server_thread, pki):
    """A client may send its first line in the same TCP segment as its handshake
    Finished (openssl s_client with piped input often does); the server must not
    drop that line while it is still setting the connection up."""
    port = server_thread.start(**tls_settings(pki))
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        tls_client, incoming, outgoing = shaken_hands(sock, pki)
        tls_client.write(b"systemstatus echo early\nquit\n")
        sock.sendall(outgoing.read())  # the Finished and the lines, in one segment
        received = b""
        for _ in range(50):  # bounded; the socket's time-out bounds each read
            chunk = sock.recv(65536)
            if not chunk:
                break
            incoming.write(chunk)
            for _ in range(50):  # one read gives at most one TLS record
                try:
                    received += tls_client.read(65536)
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
            if received.endswith(b"bye\n" + DASHES):
                break
    assert received.endswith(b"\nearly\n" + DASHES + b"bye\n" + DASHES)


def test_a_client_gone_with_its_last_handshake_bytes_leaves_nothing_behind(server_thread, pki):
    """Handshake end, a line and the close in one segment: the server sets the
    connection up already closing, and must still count it out and forget it."""
    port = server_thread.start(**tls_settings(pki))
    server = server_thread.servers[0]
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            tls_client, _, outgoing = shaken_hands(sock, pki)
            tls_client.write(b"systemstatus echo gone\n")
            with pytest.raises(ssl.SSLWantReadError):
                tls_client.unwrap()  # queues our close_notify; the server's never comes
            sock.sendall(outgoing.read())
    counted_out(server_thread, server)
    assert ask(port, pki, line="systemstatus echo still here") == "still here"


def counted_out(server_thread, server):
    """Wait, bounded, until the server counts no connection against its caps."""
    async def settled():
        async with asyncio.timeout(TIMEOUT):
            while server.admission.count or server.connections:
                await asyncio.sleep(0.005)
    server_thread.run(settled())


RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


def test_failed_handshakes_give_their_places_back(server_thread, pki):
    """asyncio calls no connection_lost for a TLS handshake that fails, so each
    used to keep its place under the caps for good: a few port probes or refused
    certificates would lock an address out (here, with 3 places per address)."""
    port = server_thread.start(**tls_settings(pki, mutual=True), max_connections_per_address=3)
    server = server_thread.servers[0]
    for _ in range(5):  # a port probe: connect, then reset before any TLS
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
    for who in (None, "expired", "stranger", None):
        with pytest.raises(CannotConnect):
            ask(port, pki, who)
    for _ in range(5):  # reset in the middle of the handshake
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            tls_client = client_ssl(pki, "alice").wrap_bio(
                ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="127.0.0.1")
            with pytest.raises(ssl.SSLWantReadError):
                tls_client.do_handshake()
            sock.sendall(outgoing.read())  # the ClientHello, and no more
            sock.recv(1)  # the server has begun its part
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
    counted_out(server_thread, server)
    assert ask(port, pki, "alice") == 3


async def test_shutdown_meeting_a_closing_connection_closes_it_once(pki, caplog):
    """asyncio's TLS transport, closed a second time, drops its TLS state, and
    the client's close_notify then fails inside asyncio.  A connection that
    said bye (and whose client is slow to answer the close) when shutdown
    begins is closed by both: it must be closed once."""
    async with running_server(**tls_settings(pki)) as server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.address[1], ssl=client_ssl(pki))
        await reader.readuntil(DASHES)  # the banner
        writer.transport.pause_reading()  # slow to answer the server's close_notify
        writer.write(b"quit\n")
        async with asyncio.timeout(TIMEOUT):
            while not server.connections or next(iter(server.connections)).pipeline.accepting:
                await asyncio.sleep(0.005)
        (connection,) = server.connections
        connection.begin_shutdown()  # what shutdown does first to every connection
        writer.transport.resume_reading()
        async with asyncio.timeout(TIMEOUT):
            assert (await reader.read()).endswith(b"bye\n" + DASHES)
        writer.close()
    broken = [r for r in caplog.records if r.name == "asyncio" and r.levelname == "ERROR"]
    assert not broken, broken[0].getMessage()
