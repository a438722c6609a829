"""A Peer names its client as people read addresses, made from the socket's own."""

from smanager.auth.peer import Peer


def test_a_peer_made_from_a_socket_address_is_named_host_colon_port():
    peer = Peer(("127.0.0.1", 40000), "127.0.0.1")
    assert peer.address == "127.0.0.1:40000"
    assert peer.address == "127.0.0.1:40000"  # asked again: the same name
    assert peer.host == "127.0.0.1"


def test_an_ipv6_peer_is_named_with_its_host_in_brackets():
    peer = Peer(("::1", 40000, 0, 0), "::1")
    assert peer.address == "[::1]:40000"


def test_a_peer_given_a_name_keeps_it_and_counts_logins_against_it():
    peer = Peer("unix")
    assert (peer.address, peer.host) == ("unix", "unix")
