"""Pure logic: configuration resolution and message validation (no sockets, no store)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from tests.helpers import SPEED, now_ms, speed_message
from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.codec import decode
from vehicle_ingest.errors import ConfigError
from vehicle_ingest.gateway.config import GatewayConfig, add_arguments, resolve
from vehicle_ingest.validate import Reason, SkewPolicy, parse_topics, valid_vins, validate


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_flags_override_environment_which_overrides_defaults():
    env = {"VI_HTTP_PORT": "9000", "VI_STORE": "chdb:///tmp/x"}
    config = resolve(_args("--http-port", "9001"), env)
    assert config.http_port == 9001
    assert config.store == "chdb:///tmp/x"
    assert config.mqtt_url == GatewayConfig().mqtt_url


@pytest.mark.parametrize(
    ("argv", "key", "problem"),
    [
        (("--http-port", "http"), "http_port", "expected an integer"),
        (("--http-port", "70000"), "http_port", "TCP port"),
        (("--store", "postgres://x"), "store", "chdb:///path"),
        (("--mqtt-url", "tcp://x"), "mqtt_url", "mqtt://host:port"),
        (("--batch-max-messages", "5000", "--receive-max", "100"), "batch_max_messages", "receive_max"),
        (("--share-group", "a/b"), "share_group", "may not contain"),
        (("--batch-linger-ms", "0"), "batch_linger_ms", "must be > 0"),
    ],
)
def test_config_errors_name_the_key_and_the_problem(argv, key, problem):
    with pytest.raises(ConfigError) as err:
        resolve(_args(*argv), {})
    assert err.value.key == key
    assert problem in str(err.value)


def test_topics_parse_vin_and_stream():
    cols = parse_topics(
        [
            "vi/v1/SMXABCDEFGH123456/signals",
            "vi/v1/SMXABCDEFGH123456/events",
            "vi/v1/SHORT/signals",
            "other/SMXABCDEFGH123456/signals",
            "vi/v1/SMXABCDEFGH123456/signals/extra",
        ]
    )
    assert cols.kind.tolist() == [1, 2, 0, 0, 0]
    assert cols.vin[0] == b"SMXABCDEFGH123456"


def test_vin_alphabet_excludes_i_o_q():
    vins = np.array(
        [b"SMXABCDEFGH123456", b"SMXABCDEFGH12345I", b"SMXABCDEFGH12345O", b"smxabcdefgh123456"], dtype="S17"
    )
    assert valid_vins(vins).tolist() == [True, False, False, False]


def test_first_failing_check_is_the_reason():
    vin = "SMXVALXDATE000001"
    msgs = [
        speed_message(vin, 1),
        speed_message(vin, 2, topic_vin="SMXVALXDATE000002"),
        speed_message(vin, 3, base_ts=now_ms() + 3_600_000),
        speed_message(vin, 4, values=np.array([10**7] * 10)),
    ]
    batch = decode([m.payload for m in msgs])
    reason = validate(
        parse_topics([m.topic for m in msgs]),
        batch,
        load_signal_catalog(),
        load_event_catalog(),
        now_ms(),
        SkewPolicy(max_past_ms=86_400_000, max_future_ms=60_000),
    )
    assert [Reason(r).label for r in reason] == ["ok", "vin_mismatch", "timestamp_skew", "value_out_of_range"]
    assert SPEED.max < 10**6
