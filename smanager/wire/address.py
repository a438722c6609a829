"""Addresses as people read and write them."""


def format_address(host, port):
    """``host:port``, an IPv6 host in brackets (``[::1]:10000``), as URLs write it."""
    host = str(host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
