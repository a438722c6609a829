"""The clients over TLS: the blocking and asyncio clients and tshell talk TLS,
reconnect only when the server closed, and say clearly what a plain client at a
TLS port meets, and why a server's certificate was not accepted."""

import asyncio
import select

import pytest
from helpers import TIMEOUT, client_ssl, openssl, tls_call, tls_settings, tshell

from smanager.client import (
    AsyncClient,
    CannotConnect,
    Client,
    TimedOut,
    fleet,
    tls_context,
)


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


# -- why a TLS connection failed, in OpenSSL's words ---------------------------------------

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def self_signed_for_localhost(directory):
    """A self-signed certificate for CN=localhost only: not for 127.0.0.1."""
    openssl("req", "-x509", *EC_KEY, "-keyout", "self.key", "-out", "self.pem",
            "-subj", "/CN=localhost", "-days", "2", cwd=directory)
    return {"tls_cert": str(directory / "self.pem"), "tls_key": str(directory / "self.key")}


def expired_for_127_0_0_1(directory, pki):
    """Signed by the trusted CA, for 127.0.0.1, but expired."""
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", *EC_KEY, "-keyout", "old.key", "-out", "old.csr", "-subj", "/CN=old",
            cwd=directory)
    openssl("x509", "-req", "-in", "old.csr", "-CA", str(pki / "ca.pem"),
            "-CAkey", str(pki / "ca.key"), "-set_serial", "7", "-days", "-1",
            "-extfile", "san.ext", "-out", "old.pem", cwd=directory)
    return {"tls_cert": str(directory / "old.pem"), "tls_key": str(directory / "old.key")}


def describe_failure(server_thread, settings, ssl):
    port = server_thread.start(**settings)
    with pytest.raises(CannotConnect) as caught:
        Client("127.0.0.1", port, ssl=ssl, timeout=TIMEOUT).connect()
    return port, str(caught.value)


def test_a_certificate_for_another_name_is_an_ip_address_mismatch(server_thread, tmp_path):
    settings = self_signed_for_localhost(tmp_path)
    port, said = describe_failure(server_thread, settings, tls_context(settings["tls_cert"]))
    assert said == (f"cannot connect to 127.0.0.1:{port}: certificate verify failed: IP "
                    "address mismatch, certificate is not valid for '127.0.0.1'")


def test_a_certificate_from_an_unknown_ca_says_so(server_thread, pki):
    port, said = describe_failure(server_thread, tls_settings(pki),
                                  tls_context(str(pki / "other-ca.pem")))
    assert said == (f"cannot connect to 127.0.0.1:{port}: certificate verify failed: unable "
                    "to get local issuer certificate (a CA not trusted here)")


def test_an_expired_certificate_says_it_has_expired(server_thread, pki, tmp_path):
    port, said = describe_failure(server_thread, expired_for_127_0_0_1(tmp_path, pki),
                                  client_ssl(pki))
    assert said == (f"cannot connect to 127.0.0.1:{port}: certificate verify failed: "
                    "certificate has expired")


def test_tls_to_a_plain_server_says_it_is_not_tls(server_thread, pki):
    port, said = describe_failure(server_thread, {}, client_ssl(pki))
    assert said == \
        f"cannot connect to 127.0.0.1:{port}: TLS: wrong version number (not a TLS server?)"


def test_a_server_wanting_a_client_certificate_is_named_as_a_likely_cause(server_thread, pki):
    port, said = describe_failure(server_thread, tls_settings(pki, mutual=True), client_ssl(pki))
    assert said.startswith(f"127.0.0.1:{port} closed the connection before its greeting "
                           "(a TLS server does that when it wants a client certificate")


def test_tshell_and_the_fleet_say_why_the_certificate_was_refused(server_thread, tmp_path):
    port = server_thread.start(**self_signed_for_localhost(tmp_path))
    where, why = f"127.0.0.1:{port}", ("certificate verify failed: IP address mismatch, "
                                       "certificate is not valid for '127.0.0.1'")
    ca = str(tmp_path / "self.pem")
    assert tshell(where, "--tls-ca", ca, "-c", "hostname") == \
        (2, "", f"tshell: cannot connect to {where}: {why}\n")
    results = asyncio.run(fleet.run_everywhere([("127.0.0.1", port)], "hostname",
                                               timeout=TIMEOUT, ssl=tls_context(ca)))
    assert fleet.as_text(results[0]) == f"{where}: cannot connect to {where}: {why}\n"
