"""The server log says what an admin looks for: where it listens and whether
that is TLS, where services come from, refused TLS handshakes and why, lines
too long (one log line for a flood), and who asked for a restart."""

import asyncio
import json
import logging
import ssl

from helpers import QUICK, SEP, LineClient, running_server, short_dir, tls_settings, until


def messages(caplog):
    return [record.getMessage() for record in caplog.records]


def logged(caplog, text):
    return any(text in message for message in messages(caplog))


async def test_the_first_lines_say_where_services_come_from_and_what_listens(
        server_process):
    server = server_process()
    log = "".join(server.log)
    assert "loading services from " in log
    assert f"listening on 127.0.0.1:{server.port} (plain TCP)" in log


async def test_the_listening_line_says_tls(caplog, pki):
    caplog.set_level(logging.INFO, "smanager.server")
    async with running_server(**tls_settings(pki, mutual=True)) as server:
        port = server.address[1]
        assert logged(caplog, f"listening on 127.0.0.1:{port} (TLS, client certificates required)")


async def test_a_refused_tls_handshake_is_logged_with_its_reason(caplog, pki):
    caplog.set_level(logging.WARNING, "smanager.limits")
    async with running_server(**tls_settings(pki)) as server:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"systemstatus echo plain text to a TLS port\n")
        assert await asyncio.wait_for(reader.read(), QUICK) == b""  # refused, closed
        writer.close()
        assert await until(lambda: logged(caplog, "refused 1 TLS handshake(s); the latest: "
                                                  "127.0.0.1:"))
        assert logged(caplog, "wrong version number")


async def test_a_client_without_a_certificate_is_logged_as_refused(caplog, pki):
    caplog.set_level(logging.WARNING, "smanager.limits")
    async with running_server(**tls_settings(pki, mutual=True)) as server:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        try:
            reader, writer = await asyncio.open_connection(*server.address, ssl=context)
            await asyncio.wait_for(reader.read(), QUICK)  # TLS 1.3: refused after the handshake
            writer.close()
        except (ssl.SSLError, ConnectionError):
            pass
        assert await until(lambda: logged(caplog, "refused 1 TLS handshake(s)"))
        assert logged(caplog, "certificate")


async def test_a_flood_of_long_lines_is_one_log_line(caplog):
    caplog.set_level(logging.WARNING, "smanager.limits")
    async with running_server(max_line=100) as server:
        for _ in range(10):
            client = await LineClient.connect(server.address[1])
            await client.send(b"x" * 200 + b"\n")
            assert (await client.read_all()).startswith(b"ERROR: line longer than 100 bytes")
            await client.close()
    flood = [m for m in messages(caplog) if "for a line too long" in m]
    assert 1 <= len(flood) < 10  # one a second at most, however slow the machine
    assert flood[0].startswith("closed 1 connection(s) for a line too long; the latest: "
                               "127.0.0.1:")
    assert flood[0].endswith("sent more than 100 bytes")


async def test_a_restart_over_the_wire_says_who_asked(caplog):
    caplog.set_level(logging.INFO, "smanager.builtins")
    async with running_server() as server:
        client = await LineClient.connect(server.address[1])
        assert (await client.ask("restart testsvc", QUICK)) == "restarted: testsvc\n" + SEP
        await client.close()
    assert any(m.startswith("127.0.0.1:") and m.endswith("user=- asked to restart testsvc")
               for m in messages(caplog))


async def test_status_says_where_the_server_listens_and_who_is_connected():
    with short_dir() as directory:
        socket_path = str(directory / "s.sock")
        await status_with_unix_socket(socket_path)


async def status_with_unix_socket(socket_path):
    async with running_server(unix_socket=socket_path) as server:
        client = await LineClient.connect(server.address[1])
        other = await LineClient.connect(server.address[1])
        await client.send("mode json")
        assert json.loads(await client.reader.readline())["result"] == "json"
        await client.send("status")
        report = json.loads(await asyncio.wait_for(client.reader.readline(), QUICK))["result"]
        assert report["listening"] == [f"127.0.0.1:{server.address[1]} (plain TCP)",
                                       f"{socket_path} (Unix socket)"]
        assert report["connections"] == 2 and report["max_connections"] == 1000
        assert report["services"]["testsvc"]["state"] == "running"
        await client.close()
        await other.close()
