"""Properties of the validation and ingest stages on arbitrary input (hypothesis).

The codec's own properties (round trips, truncations, byte flips, numba = reference)
live in tests/test_codec_parity.py; these are the stages after it.
"""

from __future__ import annotations

import re

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.helpers import now_ms, speed_message
from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.pipeline import Pipeline
from vehicle_ingest.validate import parse_topics, valid_vins

VIN = "SMXPR0PERTY000001"
# The topic grammar, written independently of parse_topics: 17 ASCII characters other than '/'.
TOPIC = re.compile(r"vi/v1/([\x00-\x2e\x30-\x7f]{17})/(signals|events)", re.S)
VIN_SHAPE = re.compile(rb"[A-HJ-NPR-Z0-9]{17}")

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def near_valid_topics() -> st.SearchStrategy[str]:
    vin = st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), min_size=15, max_size=19)
    stream = st.sampled_from(["signals", "events", "signal", "events/", "", "signals/x"])
    prefix = st.sampled_from(["vi/v1/", "vi/v2/", "vi/v1//", "/vi/v1/", ""])
    return st.builds(lambda p, v, s: f"{p}{v}/{s}", prefix, vin, stream)


@PROPS
@given(st.lists(st.one_of(st.text(max_size=200), near_valid_topics()), max_size=20))
def test_parse_topics_accepts_exactly_the_grammar(topics):
    parsed = parse_topics(topics)
    for topic, vin, kind in zip(topics, parsed.vin.tolist(), parsed.kind.tolist(), strict=True):
        match = TOPIC.fullmatch(topic)
        if match:
            assert (vin, kind) == (match.group(1).encode("ascii"), 1 if match.group(2) == "signals" else 2)
        else:
            assert (vin, kind) == (b"", 0), topic


@PROPS
@given(
    st.lists(
        st.binary(min_size=17, max_size=17)
        | st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=17, max_size=17).map(str.encode),
        max_size=20,
    )
)
def test_valid_vins_is_the_iso_3779_shape(vins):
    # 'S17' strips trailing NUL bytes; the shape check must see the stored value.
    column = np.array(vins, dtype="S17")
    assert valid_vins(column).tolist() == [bool(VIN_SHAPE.fullmatch(v)) for v in column.tolist()]


def _flip(payload: bytes, flips: list[tuple[int, int]]) -> bytes:
    data = bytearray(payload)
    for pos, value in flips:
        data[pos % len(data)] = value
    return bytes(data)


VALID = speed_message(VIN, 1, base_ts=now_ms() - 120_000).payload
hostile_payloads = st.one_of(
    st.binary(max_size=300),
    st.builds(_flip, st.just(VALID), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4)),
)


def test_ingest_of_arbitrary_payloads_never_raises_and_stores_only_valid_ones(store):
    ingestor = Pipeline(store, load_signal_catalog(), load_event_catalog(), Metrics.create(CollectorRegistry()))
    seq = iter(range(10**6))
    tally = {"stored": 0, "rejected": 0}

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(hostile_payloads)
    @example(VALID)  # the stored branch, every run
    def check(payload: bytes) -> None:
        # A fresh VIN per example: what it stores is exactly what this example did.
        vin = f"SMXPR0P{next(seq):010d}"
        payload = payload.replace(VIN.encode(), vin.encode())
        outcome = ingestor.ingest([f"vi/v1/{vin}/signals"], [payload], now_ms())
        rows = store.rows(f"SELECT count() FROM signals WHERE vin = '{vin}'")[0][0]
        letters = store.rows(
            "SELECT count() FROM dead_letters WHERE vin = %(v)s OR topic = %(t)s",
            {"v": vin, "t": f"vi/v1/{vin}/signals"},
        )[0][0]
        assert outcome.stored + sum(outcome.rejected.values()) == 1
        tally["stored" if outcome.stored else "rejected"] += 1
        if outcome.stored:
            assert rows == outcome.samples > 0 and letters == 0
        else:
            assert rows == 0 and letters == 1, (outcome, payload)

    check()
    assert tally["stored"] > 0 and tally["rejected"] > 0, tally  # both branches were exercised
