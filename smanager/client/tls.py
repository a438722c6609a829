"""TLS for clients: verify the server, and present a certificate if it asks (mutual TLS)."""

import ssl


def tls_context(ca=None, cert=None, key=None):
    """Verifies the server against ``ca`` (or the system's CAs); presents
    ``cert`` (and ``key``) if the server asks for a client certificate."""
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(cert, key)
    return context
