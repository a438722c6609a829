"""TLS (stdlib ssl, TLS 1.2 or newer) for the TCP listener.

- ``--tls-cert`` and ``--tls-key`` make the TCP listener speak TLS only.
- ``--tls-client-ca`` also requires every client to present a certificate
  signed by that CA (mutual TLS); a client without one, with one from another
  CA, or with an expired one is refused during the handshake.  The
  certificate's subject common name is the connection's user (the audit
  trail writes it).
"""

import ssl


def server_context(cert, key, client_ca=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


def peer_user(transport):
    """The common name of the client's verified certificate, or None."""
    certificate = transport.get_extra_info("peercert")
    for rdn in (certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def close(transport, secure):
    """Close a transport (``secure``: a TLS one) so that asyncio's TLS can finish its side:

    - once: closed a second time, it drops its TLS state, and the client's
      close_notify then fails inside asyncio;
    - reading: if the client's end (a FIN without close_notify) came while we
      had stopped reading, it waits, with no time-out, for reading to resume.
      What it reads then is ignored: the caller no longer runs anything.

    A plain transport needs neither: resuming it would only add and remove
    its reader, two system calls for every connection."""
    if not transport.is_closing():
        if secure:
            transport.resume_reading()
        transport.close()
