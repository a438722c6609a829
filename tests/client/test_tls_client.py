"""The clients over TLS: the blocking and asyncio clients and tshell talk TLS,
reconnect only when the server closed, and say clearly what a plain client at a
TLS port meets."""

import asyncio
import select

import pytest
from helpers import TIMEOUT, client_ssl, tls_call, tls_settings, tshell

from smanager.client import AsyncClient, Client, TimedOut


def test_the_clients_talk_tls(server_thread, pki):
    port = server_thread.start(**tls_settings(pki))
    assert tls_call(port, pki) == 3
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


def test_a_plain_client_at_a_tls_port_gets_a_clear_error(server_thread, pki):
    port = server_thread.start(**tls_settings(pki))
    with pytest.raises(TimedOut, match="sent no greeting within 0.3 s .a TLS server waits"):
        Client("127.0.0.1", port, timeout=0.3).connect()


def test_a_tls_client_comes_back_after_the_server_closed_it_idle(server_thread, pki):
    """Pin (client/blocking.py _stale with TLS): after the server's idle refusal
    the next call reconnects instead of reading the leftover error."""
    port = server_thread.start(**tls_settings(pki), idle_timeout=0.3)
    with Client("127.0.0.1", port, ssl=client_ssl(pki), timeout=TIMEOUT) as client:
        assert client.call("testsvc add 1 2").value == 3
        first = client._sock
        poller = select.poll()
        poller.register(first, select.POLLIN)
        assert poller.poll(TIMEOUT * 1000), "the server never closed the idle connection"
        assert client.call("testsvc add 2 2").value == 4
        assert client._sock is not first  # a new connection, not the old one's leftovers
