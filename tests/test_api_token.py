"""The gateway's /api (SQL over raw data, erase) behind a bearer token; probes and /metrics stay open.

Pure logic first (config rule, redaction, worker command lines), then a real gateway process.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from vehicle_ingest.gateway.config import GatewayConfig
from vehicle_ingest.gateway.config_render import to_json, to_toml
from vehicle_ingest.gateway.workers import _argv, _env

TOKEN = "7c1b0f2e-test-token-5a9d"


def _problem_keys(**settings: object) -> list[str]:
    return [e.key for e in GatewayConfig(**settings).problems()]


@pytest.mark.parametrize("host", ["0.0.0.0", "", "0", "10.1.2.3", "::", "::ffff:127.0.0.1", "gateway.internal"])
def test_an_api_reachable_off_loopback_needs_a_token(host):
    assert "api_token" in _problem_keys(http_host=host)
    assert "api_token" not in _problem_keys(http_host=host, api_token=TOKEN)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_may_go_without_a_token(host):
    assert "api_token" not in _problem_keys(http_host=host)


@pytest.mark.parametrize("token", ["short-token", "a token with spaces in it", "tökén-0123456789abcdef"])
def test_a_token_must_be_long_and_sendable_as_is_in_a_header(token):
    assert "api_token" in _problem_keys(api_token=token)


def test_the_gateway_refuses_to_start_with_an_open_api_off_loopback(tmp_path):
    argv = ("gateway", "--http-host", "0.0.0.0", "--store", f"chdb://{tmp_path / 'store'}")
    result = _cli(*argv, token=None)
    assert result.returncode == 2 and "api_token" in result.stderr
    assert not (tmp_path / "store").exists()  # refused before opening anything


def test_the_token_is_never_printed_nor_put_on_a_worker_command_line():
    config = GatewayConfig(api_token=TOKEN)
    assert TOKEN not in to_toml(config) and TOKEN not in to_json(config)
    assert 'api_token = "***"' in to_toml(config)
    assert TOKEN not in " ".join(_argv(config))  # /proc/<pid>/cmdline is readable by every local user
    assert _env(config)["VI_API_TOKEN"] == TOKEN


def _get(url: str, token: str | None = None, method: str = "GET", scheme: str = "Bearer") -> int:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    if token is not None:
        request.add_header("Authorization", f"{scheme} {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        return b"".join(iter(lambda: sock.recv(65536), b""))


def _status(port: int, path: str, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def _cli(*argv: str, token: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VI_API_TOKEN"}
    if token is not None:
        env["VI_API_TOKEN"] = token
    cmd = [sys.executable, "-m", "vehicle_ingest.gateway.cli", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.integration
def test_api_routes_need_the_token_and_probes_do_not(broker, rig, tmp_path):
    gw = rig.gateway(broker.url, "--api-token", TOKEN)  # ready: /readyz answered without a token
    assert _get(gw.url + "/metrics") == 200 and _get(gw.url + "/healthz") == 200
    assert _get(gw.url + "/api/stats") == 401
    assert _get(gw.url + "/api/stats", "wrong") == 401
    assert _get(gw.url + "/api/stats", TOKEN, scheme="bearer") == 401  # the scheme exactly as RFC 6750 writes it
    assert _get(gw.url + "/api/erase", method="POST") == 401
    assert _get(gw.url + "//api/sql", method="POST") == 401  # every path but the probes is guarded
    assert _get(gw.url + "//api/sql", TOKEN, method="POST") == 404
    assert _get(gw.url + "/api/stats", TOKEN) == 200
    refused = _cli("stats", "--gateway", gw.url, token=None)
    assert refused.returncode == 2 and "api_token" in refused.stderr and "VI_API_TOKEN" in refused.stderr
    allowed = _cli("stats", "--gateway", gw.url, token=TOKEN)
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["messages"] == 0
    assert gw.stop() == 0
    assert TOKEN not in (tmp_path / "gateway.log").read_text()  # its startup log shows the settings


@pytest.mark.integration
def test_without_a_token_the_api_refuses_what_a_browser_could_send(broker, rig):
    gw = rig.gateway(broker.url)  # loopback, no token: the CLI and the tests' own requests pass
    port = int(gw.url.rsplit(":", 1)[1])
    assert _status(port, "/api/stats", {}) == 200
    assert _status(port, "/api/stats", {"Origin": "http://evil.example"}) == 403  # cross-site request
    assert _status(port, "/api/stats", {"Host": "evil.example:9108"}) == 403  # DNS rebinding
    assert _status(port, "/metrics", {"Host": "prometheus.example"}) == 200
    assert _raw(port, b"BROKEN\r\n\r\n").split(b"\r\n")[0].split()[1] == b"400"  # answered and closed, not left hanging
    assert gw.stop() == 0
