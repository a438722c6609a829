"""The network collectors' options, driven with strings: no server."""

import pytest

from smanager.metrics.probes import (
    KINDS,
    Apache,
    Http,
    Memcached,
    Nginx,
    Redis,
    TcpCheck,
)


def error_of(kind, options):
    with pytest.raises(ValueError) as raised:
        kind(options, name="probe")
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_every_network_kind_is_exported_by_its_name():
    assert KINDS == {"redis": Redis, "memcached": Memcached, "nginx": Nginx, "apache": Apache,
                     "http": Http, "tcpcheck": TcpCheck}


@pytest.mark.parametrize("kind, typo, meant", [
    (Redis, "adress", "address"), (Redis, "pasword", "password"), (Memcached, "addres", "address"),
    (Nginx, "uri", "url"), (Apache, "urls", "url"), (Http, "expected", "expect"),
    (TcpCheck, "adress", "address")])
def test_an_unknown_option_names_the_nearest_known_one(kind, typo, meant):
    options = {"url": "http://127.0.0.1/", "address": "127.0.0.1:1", typo: "x"}
    options = {key: value for key, value in options.items()
               if key == typo or key in ("url" if kind in (Nginx, Apache, Http) else "address")}
    assert error_of(kind, options) == f'unknown option "{typo}" (did you mean "{meant}"?)'


@pytest.mark.parametrize("address", ["x", "host:", ":80", "host:0", "host:65536", "::1:80",
                                     "host:http", "/run/redis.sock", 6379, True])
def test_a_tcp_address_must_be_host_colon_port(address):
    message = error_of(TcpCheck, {"address": address})
    assert message.startswith("address must be") and "HOST:PORT" in message


def test_an_address_is_a_host_and_port_and_ipv6_is_bracketed():
    assert TcpCheck({"address": "db.example:5432"}).address == ("db.example", 5432)
    assert TcpCheck({"address": "[::1]:80"}).address == ("::1", 80)
    assert TcpCheck({"address": "[::1]:80"}).where == "[::1]:80"


def test_redis_and_memcached_also_take_a_unix_socket_path():
    assert Redis({"address": "/run/redis/redis.sock"}).address == ("/run/redis/redis.sock", None)
    assert Memcached({"address": "/run/mc.sock"}).address == ("/run/mc.sock", None)
    assert "HOST:PORT or a socket path" in error_of(Redis, {"address": "redis"})


def test_with_no_options_each_scraper_asks_the_usual_local_place():
    assert Redis().address == ("127.0.0.1", 6379)
    assert Memcached().address == ("127.0.0.1", 11211)
    assert Nginx().url.target == "/nginx_status" and Nginx().url.port == 80
    assert Apache().url.target == "/server-status?auto" and Apache().url.host == "127.0.0.1"


def test_a_check_needs_what_it_checks():
    assert error_of(Http, {}) == "url is required"
    assert error_of(TcpCheck, {}) == "address is required"


@pytest.mark.parametrize("url", ["ftp://host/", "127.0.0.1/status", "http:///status",
                                 "http://host:99999/", "http://host/a b", "http://host/\r\nX: y",
                                 80])
def test_a_url_must_be_http_or_https(url):
    assert error_of(Nginx, {"url": url}).startswith("url must be")


def test_a_url_holding_a_password_is_refused_without_showing_it():
    message = error_of(Apache, {"url": "http://admin:s3cret@127.0.0.1/server-status?auto"})
    assert message == "url must not hold a user or password"


def test_a_url_gives_host_port_header_and_target():
    url = Http({"url": "https://[::1]:8443/health?deep=1#top"}).url
    assert (url.https, url.host, url.port, url.netloc, url.target) == (
        True, "::1", 8443, "[::1]:8443", "/health?deep=1")
    assert Http({"url": "http://example.org"}).url.target == "/"


@pytest.mark.parametrize("expect, allowed", [(None, {200}), (204, {204}), ([200, 301], {200, 301})])
def test_http_expects_one_status_or_several(expect, allowed):
    options = {"url": "http://127.0.0.1/"} | ({} if expect is None else {"expect": expect})
    assert Http(options).expect == allowed


@pytest.mark.parametrize("expect", [[], "200", 99, 600, [200, True], 200.0])
def test_http_refuses_what_is_not_a_status(expect):
    assert error_of(Http, {"url": "http://127.0.0.1/", "expect": expect}).startswith("expect must")


def test_a_redis_password_that_is_not_text_is_refused_without_being_shown():
    assert error_of(Redis, {"password": 123456789}) == "password must be text"
