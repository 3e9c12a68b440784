import pytest

from twagent import proxy
from twagent.errors import ConfigError


@pytest.mark.parametrize(
    ("entries", "host", "port", "bypass"),
    [
        (["*"], "api.example.org", 443, True),
        (["api.example.org"], "api.example.org", 443, True),
        (["example.org"], "api.example.org", 443, True),
        (["example.org"], "badexample.org", 443, False),
        ([".example.org"], "api.example.org", 443, True),
        ([".example.org"], "example.org", 443, True),
        ([".example.org"], "example.com", 443, False),
        (["api.example.org:443"], "api.example.org", 443, True),
        (["api.example.org:8443"], "api.example.org", 443, False),
        (["127.0.0.2"], "127.0.0.2", 443, True),
        (["127.0.0.0/8"], "127.0.0.2", 443, True),
        (["10.0.0.0/8"], "127.0.0.2", 443, False),
        (["localhost"], "127.0.0.1", 443, False),
        ([], "api.example.org", 443, False),
    ],
)
def test_proxy_no_proxy_matching(entries, host, port, bypass):
    assert proxy.bypassed(host, port, entries) is bypass


def test_proxy_https_proxy_wins_and_credentials_stay_out_of_display():
    env = {
        "HTTPS_PROXY": "http://user:p%40ss@proxy.local:3128",
        "ALL_PROXY": "http://x:1",
    }
    route = proxy.route_for("api.example.org", 443, env)
    assert (route.host, route.port) == ("proxy.local", 3128)
    assert route.authorization == "Basic dXNlcjpwQHNz"
    assert "p@ss" not in route.display
    assert "user" not in route.display


def test_proxy_lower_case_first_and_no_proxy_applies():
    env = {"https_proxy": "proxy:8080", "no_proxy": "api.example.org"}
    assert proxy.route_for("api.example.org", 443, env) is None
    assert proxy.route_for("other.org", 443, env).port == 8080


def test_proxy_all_proxy_http_is_used():
    route = proxy.route_for("h", 443, {"ALL_PROXY": "http://p:3128"})
    assert route.variable == "ALL_PROXY"


@pytest.mark.parametrize("url", ["socks5://p:1080", "socks5h://p:1080", "socks4://p:1"])
def test_proxy_socks_is_refused_clearly(url):
    with pytest.raises(ConfigError, match="SOCKS"):
        proxy.route_for("h", 443, {"ALL_PROXY": url})


def test_proxy_none_when_unset():
    assert proxy.route_for("h", 443, {}) is None


def test_proxy_connect_request_carries_auth():
    route = proxy.parse_proxy("http://u:p@h:1", "HTTPS_PROXY")
    text = proxy._connect_request(route, "api.example.org", 443).decode()
    assert text.startswith("CONNECT api.example.org:443 HTTP/1.1\r\n")
    assert "Proxy-Authorization: Basic dTpw" in text
    assert text.endswith("\r\n\r\n")
