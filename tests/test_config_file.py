"""Configuration from a TOML file, env and flags; `config check|show|reference`; JSON logs."""

from __future__ import annotations

import argparse
import io
import json
import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from vehicle_ingest.errors import ConfigError, ConfigErrors
from vehicle_ingest.gateway.config import GatewayConfig, add_arguments, resolve_layers, settings
from vehicle_ingest.gateway.config_render import redact, reference_markdown
from vehicle_ingest.gateway.logs import JsonFormatter, configure_logging

REPO = Path(__file__).resolve().parents[1]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def _problems(path: Path, env: dict[str, str] | None = None, *argv: str) -> list[ConfigError]:
    with pytest.raises(ConfigErrors) as err:
        resolve_layers(_args("--config", str(path), *argv), env or {})
    return err.value.errors


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vehicle_ingest.gateway.cli", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, cwd=REPO)


# -- precedence --------------------------------------------------------------------


def test_file_then_env_then_flags(tmp_path):
    path = _write(
        tmp_path, '[http]\nhttp_port = 9001\nhttp_host = "127.0.0.2"\n[mqtt]\nreceive_max = 3000\nclient_id = "f"\n'
    )
    env = {"VI_HTTP_PORT": "9002", "VI_RECEIVE_MAX": "4000"}
    resolved = resolve_layers(_args("--config", str(path), "--receive-max", "5000"), env)
    c = resolved.config
    assert (c.http_host, c.client_id) == ("127.0.0.2", "f")  # file over defaults
    assert c.http_port == 9002  # env over file
    assert c.receive_max == 5000  # flag over env over file
    assert c.store == GatewayConfig().store  # default
    assert resolved.origins == {
        "http_port": "env VI_HTTP_PORT",
        "http_host": str(path),
        "receive_max": "--receive-max",
        "client_id": str(path),
    }


def test_file_from_vi_config_and_flat_keys(tmp_path):
    path = _write(tmp_path, "http_port = 9005\ncdp_allow_vin = true\n")
    config = resolve_layers(_args(), {"VI_CONFIG": str(path)}).config
    assert (config.http_port, config.cdp_allow_vin) == (9005, True)


def test_env_booleans_and_integers_are_text():
    config = resolve_layers(_args("--cdp-allow-vin", "yes"), {"VI_BATCH_LINGER_MS": "50"}).config
    assert config.cdp_allow_vin is True and config.batch_linger_ms == 50


# -- problems -------------------------------------------------------------------------


def test_unknown_keys_and_tables_suggest_the_closest_name(tmp_path):
    path = _write(tmp_path, 'http_prot = 1\n[mqtt]\nurl = "mqtt://x:1883"\n[bacth]\nbatch_linger_ms = 5\n')
    by_key = {e.key: e.problem for e in _problems(path)}
    assert by_key == {
        "http_prot": "unknown key; did you mean http_port?",
        "mqtt.url": "unknown key; did you mean mqtt_url?",
        "[bacth]": "unknown table; did you mean [batch]?",
    }


def test_type_errors_name_key_expected_type_and_value(tmp_path):
    path = _write(tmp_path, 'http_port = "9108"\ncdp_allow_vin = 1\n[batch]\nbatch_linger_ms = 2.5\n')
    errors = _problems(path)
    assert [str(e) for e in errors] == [
        f'{path}: http_port: expected an integer, got "9108" (a string)',
        f"{path}: cdp_allow_vin: expected a boolean (true or false), got 1 (an integer)",
        f"{path}: batch_linger_ms: expected an integer, got 2.5 (a float)",
    ]


def test_every_problem_is_reported_at_once(tmp_path):
    text = (
        'receive_max = "many"\nstore = "postgres://x"\nshare_group = "a/b"\nhttp_port = 70000\nclient_id = "a"\n'
        "[mqtt]\nhttp_host = 'x'\nclient_id = 'b'\n"
    )
    path = _write(tmp_path, text)
    errors = _problems(path, {"VI_BATCH_LINGER_MS": "soon"}, "--max-future-s", "0")
    assert [(e.source, e.key) for e in errors] == [
        (str(path), "receive_max"),  # the file: keys and types
        (str(path), "mqtt.http_host"),
        (str(path), "client_id"),
        ("env VI_BATCH_LINGER_MS", "batch_linger_ms"),  # text that is not a number
        ("--max-future-s", "max_future_s"),  # values of the effective config, named by origin
        (str(path), "http_port"),
        (str(path), "store"),
        (str(path), "share_group"),
    ]
    assert "belongs in [http]" in errors[1].problem and "set twice" in errors[2].problem


def test_unreadable_and_invalid_toml_name_the_file(tmp_path):
    missing = _problems(tmp_path / "nope.toml")
    assert missing[0].source.endswith("nope.toml") and "cannot read" in missing[0].problem
    broken = _problems(_write(tmp_path, "http_port = \n"))
    assert "not valid TOML" in broken[0].problem and "line 1" in broken[0].problem


def test_overridden_value_is_checked_as_effective_but_file_types_always(tmp_path):
    path = _write(tmp_path, "http_port = 70000\n")
    assert resolve_layers(_args("--config", str(path)), {"VI_HTTP_PORT": "9000"}).config.http_port == 9000
    typed = _write(tmp_path, 'http_port = "x"\n')
    assert [e.key for e in _problems(typed, {"VI_HTTP_PORT": "9000"})] == ["http_port"]


def test_unknown_vi_variable_is_a_warning_with_a_suggestion(caplog):
    with caplog.at_level(logging.WARNING, logger="vehicle_ingest.gateway.config"):
        resolve_layers(_args(), {"VI_HTTP_PROT": "1", "VI_LOG_LEVEL": "INFO"})
    assert caplog.messages == ["VI_HTTP_PROT is not a vehicle-ingest setting; did you mean VI_HTTP_PORT?"]


def test_secrets_in_urls_are_redacted():
    assert redact("http://gateway:s3cr%40t@ch:8123/db") == "http://gateway:***@ch:8123/db"
    assert (
        redact("segment+https://KEY@api.segment.io,file:/x.jsonl") == "segment+https://***@api.segment.io,file:/x.jsonl"
    )
    assert redact("chdb:///var/lib/x") == "chdb:///var/lib/x"


# -- the CLI ----------------------------------------------------------------------------


def test_config_check_ok_prints_the_effective_config_as_toml(tmp_path):
    path = _write(tmp_path, '[store]\nstore = "http://gateway:pw@clickhouse:8123/vi"\n')
    result = _cli("config", "check", str(path), "--http-port", "9200", env={"VI_RECEIVE_MAX": "3000"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"# ok: {path} ")
    shown = tomllib.loads(result.stdout)
    assert shown["http"]["http_port"] == 9200 and shown["mqtt"]["receive_max"] == 3000
    assert shown["store"]["store"] == "http://gateway:***@clickhouse:8123/vi"
    assert "receive_max = 3000  # env VI_RECEIVE_MAX" in result.stdout


def test_config_check_reports_each_error_and_exits_2(tmp_path):
    path = _write(tmp_path, 'http_prot = 1\nreceive_max = "x"\n')
    result = _cli("config", "check", str(path), env={})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}: http_prot: unknown key; did you mean http_port?",
        f'{path}: receive_max: expected an integer, got "x" (a string)',
    ]
    as_json = json.loads(_cli("config", "check", str(path), "--format", "json", env={}).stdout)
    assert as_json["ok"] is False and [e["key"] for e in as_json["errors"]] == ["http_prot", "receive_max"]


def test_config_show_and_gateway_refuse_invalid_config(tmp_path):
    shown = json.loads(_cli("config", "show", "--format", "json", env={"VI_HTTP_PORT": "9300"}).stdout)
    assert shown["config"]["http_port"] == 9300 and shown["origins"] == {"http_port": "env VI_HTTP_PORT"}
    bad = _write(tmp_path, "batch_max_messages = 5000\nreceive_max = 100\n")
    result = _cli("gateway", "--config", str(bad), env={})
    assert result.returncode == 2
    event = json.loads(result.stderr.splitlines()[-1])  # the gateway logs JSON by default
    assert event["level"] == "CRITICAL" and event["key"] == "batch_max_messages" and event["source"] == str(bad)


# -- logs ----------------------------------------------------------------------------------


def test_json_formatter_fields_extras_and_exception():
    record = logging.LogRecord("vehicle_ingest.x", logging.ERROR, __file__, 1, "stored %d", (3,), None)
    record.batch = 7
    record.level = "shadowed"
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    event = json.loads(JsonFormatter().format(record))
    assert event["level"] == "ERROR" and event["logger"] == "vehicle_ingest.x" and event["msg"] == "stored 3"
    assert event["ts"].endswith("Z") and "T" in event["ts"]
    assert event["batch"] == 7 and event["extra.level"] == "shadowed"
    assert "ValueError: boom" in event["exc"]


def test_configure_logging_writes_one_json_object_per_line():
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream)
    try:
        logging.getLogger("vehicle_ingest.test").info("two\nlines", extra={"vin": "SMX"})
    finally:
        configure_logging("INFO", "human", sys.stderr)
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["msg"] == "two\nlines" and json.loads(line)["vin"] == "SMX"
    with pytest.raises(ConfigError):
        configure_logging("LOUD", "json")


def test_cli_logs_json_lines_with_the_required_fields(tmp_path):
    path = _write(tmp_path, "http_port = 9001\n")
    result = _cli("config", "check", str(path), "--log-level", "DEBUG", "--log-format", "json", env={"VI_X": "1"})
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert {e["msg"] for e in events} >= {"config checked", "VI_X is not a vehicle-ingest setting"}
    assert all({"ts", "level", "logger", "msg"} <= e.keys() for e in events)
    human = _cli("--log-format", "human", "config", "check", str(path), env={"VI_X": "1"})
    assert "WARNING vehicle_ingest.gateway.config: VI_X is not" in human.stderr


# -- the reference ------------------------------------------------------------------------


def test_docs_config_md_is_generated_from_the_code():
    expected = reference_markdown()
    assert (REPO / "docs" / "CONFIG.md").read_text() == expected, (
        "docs/CONFIG.md is stale: run `vehicle-ingest config reference > docs/CONFIG.md`"
    )
    assert _cli("config", "reference").stdout == expected


def test_every_setting_is_documented_in_one_table_row():
    text = reference_markdown()
    for s in settings():
        assert s.doc and "|" not in s.doc
        assert text.count(f"| `{s.name}` |") == 1
