"""The gateway's /api (SQL over raw data, erase) behind a bearer token; probes and /metrics stay open.

Pure logic first (config rule, redaction, worker command lines), then a real gateway process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from gateway.config import GatewayConfig
from gateway.config_render import to_json, to_toml
from gateway.workers import _argv, _env

TOKEN = "7c1b-test-token"


def _problem_keys(**settings: object) -> list[str]:
    return [e.key for e in GatewayConfig(**settings).problems()]


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "gateway.internal"])
def test_an_api_reachable_off_loopback_needs_a_token(host):
    assert "api_token" in _problem_keys(http_host=host)
    assert "api_token" not in _problem_keys(http_host=host, api_token=TOKEN)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_may_go_without_a_token(host):
    assert "api_token" not in _problem_keys(http_host=host)


def test_the_token_is_never_printed_nor_put_on_a_worker_command_line():
    config = GatewayConfig(api_token=TOKEN)
    assert TOKEN not in to_toml(config) and TOKEN not in to_json(config)
    assert 'api_token = "***"' in to_toml(config)
    assert TOKEN not in " ".join(_argv(config))  # /proc/<pid>/cmdline is readable by every local user
    assert _env(config)["VI_API_TOKEN"] == TOKEN


def _get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _cli(*argv: str, token: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VI_API_TOKEN"}
    if token is not None:
        env["VI_API_TOKEN"] = token
    cmd = [sys.executable, "-m", "gateway.cli", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.integration
def test_api_routes_need_the_token_and_probes_do_not(broker, start_gateway):
    gw = start_gateway(broker.url, "--api-token", TOKEN)  # ready: /readyz answered without a token
    assert _get(gw.url + "/metrics") == 200 and _get(gw.url + "/healthz") == 200
    assert _get(gw.url + "/api/stats") == 401
    assert _get(gw.url + "/api/stats", "wrong") == 401
    assert _get(gw.url + "/api/stats", TOKEN) == 200
    refused = _cli("stats", "--gateway", gw.url, token=None)
    assert refused.returncode == 2 and "api_token" in refused.stderr and "VI_API_TOKEN" in refused.stderr
    allowed = _cli("stats", "--gateway", gw.url, token=TOKEN)
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["messages"] == 0
    assert gw.stop() == 0
