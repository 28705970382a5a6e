"""schemas/WIRE_FORMAT.md pinned to the code: the spec's factual claims cannot drift silently.

Every number, list, example and quoted file in the spec that a head-unit vendor relies on is read
out of the Markdown here and compared with what the code does: the rejection reasons and their
order, which of them a receipt carries, the error offsets, the seq_reused rule (through the real
decoder, validator and embedded store), the clock window, the payload and receipt limits, the
worked hex examples, the golden files, the deployed ACL and the trip / cockpit / tag signals.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from vehicle_ingest.catalog import load_event_catalog, load_signal_catalog
from vehicle_ingest.codec import (
    FORMAT_VERSION,
    MAX_PAYLOAD_BYTES,
    SignalBlock,
    Status,
    decode,
    encode_can,
    encode_events,
    encode_signals,
    quantize,
)
from vehicle_ingest.features.jobs import COCKPIT_EVENT_FEATURES, COCKPIT_STATE_FEATURES, TripRules, _signal_parameters
from vehicle_ingest.features.sql import COCKPIT_SIGNALS_SQL, TRIPS_SQL
from vehicle_ingest.gateway.config import GatewayConfig
from vehicle_ingest.gateway.mqtt_source import MqttSettings
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.pipeline import Pipeline
from vehicle_ingest.receipts import (
    RECEIPT_KIND,
    Receipt,
    ReceiptBook,
    ReceiptError,
    decode_receipt,
    encode_receipt,
    receipt_topic,
)
from vehicle_ingest.storage import Store
from vehicle_ingest.tags.definitions import COCKPIT_FEATURES
from vehicle_ingest.tags.owner_features import owner_feature_parameters
from vehicle_ingest.validate import Reason, SkewPolicy, parse_topics, valid_vins, validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
SPEC = (SCHEMAS / "WIRE_FORMAT.md").read_text(encoding="utf-8")
ACL = ROOT / "gateway" / "deploy" / "mosquitto" / "acl"
SIGNALS = load_signal_catalog()
EVENTS = load_event_catalog()
VIN = "WVWZZZ1JZXW000001"
NOW = 1_795_341_660_000  # one minute after the worked examples' base_ts
DECODER_REASONS = ["malformed", "unsupported_version", "unknown_kind", "oversize", "empty"]
GATEWAY_LIMITS = {"max_past_s": 7_776_000, "max_future_s": 300, "max_payload_bytes": 262_144}


# -- reading the spec ------------------------------------------------------------------------------


def section(title: str) -> str:
    """The text under the heading that starts with `title` ('6.', '13.2', 'The clock'), up to the next heading
    of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}.*$", SPEC, re.M)
    assert match, f"no heading {title!r} in WIRE_FORMAT.md"
    level = len(match.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(SPEC, match.end())
    return SPEC[match.end() : end.start() if end else len(SPEC)]


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)


def hex_blocks(text: str) -> list[bytes]:
    """The fenced blocks made of hex digits only (the full payloads of the worked examples)."""
    blocks = [b for b in code_blocks(text) if re.fullmatch(r"[0-9a-f\n]+", b)]
    return [bytes.fromhex(b.replace("\n", "")) for b in blocks]


def annotated_bytes(text: str) -> bytes:
    """The bytes column of a worked example's annotated dump, checking each line's offset on the way."""
    block = next(b for b in code_blocks(text) if b.startswith("off  bytes"))
    out = bytearray()
    for line in block.splitlines()[1:]:
        match = re.match(r"^(?:\s*(\d+)|\s{3})  ((?:[0-9a-f]{2} )*[0-9a-f]{2})(?: {2,}|$)", line)
        assert match, f"not an annotated dump line: {line!r}"
        if match.group(1) is not None:
            assert int(match.group(1)) == len(out), f"offset {match.group(1)} should be {len(out)}: {line!r}"
        out += bytes.fromhex(match.group(2).replace(" ", ""))
    return bytes(out)


def table(text: str, header: str) -> list[list[str]]:
    """Rows (cells stripped) of the Markdown table whose header row starts with `| header |`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def number(text: str) -> int:
    """'7 776 000' -> 7776000."""
    return int(text.replace(" ", ""))


# -- building messages -----------------------------------------------------------------------------


def speed(seq: int, raw: list[int], scale_exp: int = -1, vin: str = VIN, t0: int = NOW - 10_000) -> bytes:
    ts = np.arange(len(raw), dtype=np.int64) * 1000 + t0
    return encode_signals(vin, seq, t0, [SignalBlock(1, scale_exp, ts, np.array(raw, dtype=np.int64))])


def reasons(topics: list[str], payloads: list[bytes]) -> list[str]:
    batch = decode(payloads)
    out = validate(parse_topics(topics), batch, SIGNALS, EVENTS, NOW, SkewPolicy())
    return ["" if r == Reason.OK else Reason(int(r)).label for r in out]


def topic(stream: str = "signals", vin: str = VIN) -> str:
    return f"vi/v1/{vin}/{stream}"


@pytest.fixture(scope="module")
def ingestor(store: Store) -> Pipeline:
    return Pipeline(store, SIGNALS, EVENTS, Metrics.create(CollectorRegistry()))


# -- rejections --------------------------------------------------------------------------------------


def spec_rejections() -> list[list[str]]:
    return table(section("Rejections"), "reason")


def receipt_reasons() -> list[str]:
    """The closed list of reasons a receipt can carry (section 13.4)."""
    return ticked(section("13.4").split("The reasons a receipt can carry")[1].split("(their meaning")[0])


def test_the_rejection_table_is_exactly_the_reason_labels_decoder_first():
    labels = [ticked(row[0])[0] for row in spec_rejections()]
    assert sorted(labels) == sorted(r.label for r in Reason if r != Reason.OK)
    assert labels[: len(DECODER_REASONS)] == DECODER_REASONS == [Status(i).reason for i in range(1, 6)]


def test_the_statuses_table_is_the_decoders():
    rows = table(section("Statuses"), "status")
    assert [(row[0], int(row[1])) for row in rows] == [(s.name, int(s)) for s in Status]


def test_the_first_failing_check_in_the_spec_order_names_the_reason():
    """Each message fails the check its row names and every later one: the earliest row must win."""
    order = [ticked(row[0])[0] for row in spec_rejections()][len(DECODER_REASONS) :]
    far_past = NOW - 100 * 86_400_000
    failing = {
        "bad_topic": ("vi/v1/SHORT/events", speed(1, [4001], vin="WVWZZZ1JZXW00000I", t0=far_past)),
        "kind_mismatch": (topic("events", "WVWZZZ1JZXW000002"), speed(2, [4001], vin="WVWZZZ1JZXW00000I")),
        "invalid_vin": (topic(vin="WVWZZZ1JZXW000002"), speed(3, [4001], vin="WVWZZZ1JZXW00000I", t0=far_past)),
        "vin_mismatch": (topic(vin="WVWZZZ1JZXW000002"), speed(4, [4001], t0=far_past)),
        "unknown_signal": (
            topic(),
            encode_signals(VIN, 5, far_past, [SignalBlock(65_000, 0, np.array([far_past]), np.array([1]))]),
        ),
        "value_out_of_range": (topic(), speed(6, [4001], t0=far_past)),
        "timestamp_skew": (topic(), speed(7, [500], t0=far_past)),
    }
    got = reasons([t for t, _ in failing.values()], [p for _, p in failing.values()])
    assert got == list(failing)
    assert [r for r in order if r in failing] == list(failing)
    # unknown_event sits between unknown_signal and value_out_of_range; a signals message cannot carry it
    assert order.index("unknown_signal") < order.index("unknown_event") < order.index("value_out_of_range")
    assert order[-4:] == ["timestamp_skew", "can_model_unknown", "seq_reused", "store_rejected"]


def test_can_model_unknown_comes_after_the_clock_and_before_seq_reused(ingestor):
    t0 = NOW - 10_000
    assert ingestor.ingest([topic()], [speed(300, [500])], NOW).stored == 1

    def can(seq: int, t: int) -> bytes:
        return encode_can(VIN, seq, t, [t], [0x123], b"\x01", [1])

    skewed = ingestor.ingest([topic("can")], [can(301, NOW + 3_600_000)], NOW)
    reused = ingestor.ingest([topic("can")], [can(300, t0)], NOW)  # no vehicle model, and seq 300 is taken
    assert (dict(skewed.rejected), dict(reused.rejected)) == ({"timestamp_skew": 1}, {"can_model_unknown": 1})


def test_one_bad_sample_rejects_the_whole_message_and_scale_exp_is_not_compared_with_the_catalog(ingestor):
    assert SIGNALS.by_path("Vehicle.Speed").scale_exp == -1 and SIGNALS.by_path("Vehicle.Speed").max == 400
    got = reasons(
        [topic()] * 4,
        [speed(1, [40000], -2), speed(2, [40001], -2), speed(3, [500, 4001, 500]), speed(4, [5], 2)],
    )
    assert got == ["", "value_out_of_range", "value_out_of_range", "value_out_of_range"]
    outcome = ingestor.ingest([topic()], [speed(900, [500, 4001, 500])], NOW)
    assert (outcome.samples, dict(outcome.rejected)) == (0, {"value_out_of_range": 1})
    assert "does **not** compare a block's\n`scale_exp` with the catalog" in section("4.")


def test_receipts_carry_exactly_the_reasons_the_spec_lists_and_gateway_rejections_have_offset_minus_1(ingestor, store):
    """One batch through the real decoder, validator and store: a message per reason."""
    t0 = NOW - 10_000
    ok = speed(100, [500, 510])
    messages = {
        "": (topic(), ok),
        "empty": (
            topic(),
            bytes.fromhex("960101b1") + VIN.encode() + bytes([101]) + b"\xcf" + t0.to_bytes(8) + b"\x90",
        ),
        "kind_mismatch": (topic("can"), speed(102, [500])),
        "invalid_vin": (topic(vin="WVWZZZ1JZXW00000I"), speed(103, [500], vin="WVWZZZ1JZXW00000I")),
        "vin_mismatch": (topic(vin="WVWZZZ1JZXW000002"), speed(104, [500])),
        "unknown_signal": (
            topic(),
            encode_signals(VIN, 105, t0, [SignalBlock(65_000, 0, np.array([t0]), np.array([1]))]),
        ),
        "unknown_event": (topic("events"), encode_events(VIN, 106, t0, [65_000], [t0], [0], [""])),
        "value_out_of_range": (topic(), speed(107, [4001])),
        "timestamp_skew": (topic(), speed(108, [500], t0=NOW + 301_000)),
        "can_model_unknown": (topic("can"), encode_can(VIN, 109, t0, [t0], [0x123], b"\x01", [1])),
        "seq_reused": (topic(), speed(100, [500, 510, 520])),  # same seq as `ok`, one more sample
        "malformed": (topic(), ok[:-2]),
        "unsupported_version": (topic(), b"\x96\x02" + ok[2:]),
        "unknown_kind": (topic(), b"\x96\x01\x09" + ok[3:]),
        "oversize": (topic(), ok + bytes(MAX_PAYLOAD_BYTES)),
        "bad_topic": ("vi/v1/SHORT/signals", speed(110, [500])),
        "store_rejected": (topic(), speed(111, [500])),  # valid; the constraint below refuses its rows
    }
    store.command("ALTER TABLE signals ADD CONSTRAINT spec_refuses_111 CHECK seq != 111")
    try:
        outcome = ingestor.ingest([t for t, _ in messages.values()], [p for _, p in messages.values()], NOW)
    finally:
        store.command("ALTER TABLE signals DROP CONSTRAINT spec_refuses_111")
    assert sorted(outcome.rejected) == sorted(label for label in messages if label)
    book = ReceiptBook()
    book.add(outcome.verdicts)
    by_topic = {t: decode_receipt(p) for t, p in book.drain()}  # what goes on the wire
    receipted = sorted(reason for r in by_topic.values() for _, reason in r.rejected)
    assert receipted == sorted(receipt_reasons())

    rows = {
        reason: (offset, seq)
        for reason, offset, seq in store.rows("SELECT reason, error_offset, seq FROM dead_letters WHERE seq < 1000")
    }
    spec_offsets = {ticked(row[0])[0]: row[3] for row in spec_rejections()}
    assert set(rows) == set(spec_offsets)  # every reason was dead-lettered once here
    for reason, (offset, _seq) in rows.items():
        if spec_offsets[reason] == "-1":
            assert offset == -1, reason
    assert rows["empty"][0] == 31  # the offset of `body` in that 32-byte payload
    assert rows["oversize"][0] == 0 and rows["unsupported_version"][0] == 1 and rows["unknown_kind"][0] == 2
    assert rows["unsupported_version"][1] == 0  # "seq there is 0 when the decoder could not read it"
    assert "`seq` there is 0 when the decoder could not read it" in section("Rejections")
    # which rows of the spec's table say a receipt is sent
    assert sorted(ticked(row[0])[0] for row in spec_rejections() if "`rejected`" in row[2]) == receipted
    assert by_topic[receipt_topic(VIN)].stored == ((100, 100),)
    assert by_topic["vi/v1/WVWZZZ1JZXW00000I/receipt"].rejected == ((103, "invalid_vin"),)  # the topic's VIN
    assert by_topic["vi/v1/WVWZZZ1JZXW000002/receipt"].rejected == ((104, "vin_mismatch"),)


def test_the_seq_reused_rule_compares_the_earliest_timestamp_and_the_count_only(ingestor):
    first = speed(500, [500, 510, 520])
    assert ingestor.ingest([topic()], [first], NOW).stored == 1
    copies = {
        "same bytes": first,
        "other values, same earliest ts and count": speed(500, [900, 10, 3000]),
        "other scale_exp, same earliest ts and count": speed(500, [5000, 5100, 5200], -2),
        "one more sample": speed(500, [500, 510, 520, 530]),
        "earliest ts 1 ms later": speed(500, [500, 510, 520], t0=NOW - 9_999),
        "an events message under the same seq": encode_events(VIN, 500, NOW, [1], [NOW - 5_000], [0], ["x"]),
    }
    got = []
    for name, payload in copies.items():
        stream = "events" if name.startswith("an events") else "signals"
        outcome = ingestor.ingest([topic(stream)], [payload], NOW)
        got.append((name, outcome.stored, outcome.duplicates, dict(outcome.rejected), list(outcome.verdicts.reason)))
    assert got == [
        ("same bytes", 0, 1, {}, [""]),
        ("other values, same earliest ts and count", 0, 1, {}, [""]),
        ("other scale_exp, same earliest ts and count", 0, 1, {}, [""]),
        ("one more sample", 0, 0, {"seq_reused": 1}, ["seq_reused"]),
        ("earliest ts 1 ms later", 0, 0, {"seq_reused": 1}, ["seq_reused"]),
        ("an events message under the same seq", 0, 0, {"seq_reused": 1}, ["seq_reused"]),
    ]
    text = section("1.")
    assert "the **earliest timestamp** among" in text and "the **number** of samples" in text
    assert "**drops it silently**, receipting it as stored" in text


# -- limits, clock, config -----------------------------------------------------------------------------


def test_the_clock_window_and_the_payload_cap_are_the_gateway_defaults():
    config = GatewayConfig()
    clock = section("The clock")
    match = re.search(r"`max_past_s` = ([\d ]+) \(90 days\) and `max_future_s` = (\d+) \(5 minutes\)", clock)
    assert match, "the clock section states the defaults"
    assert (number(match.group(1)), number(match.group(2))) == (config.max_past_s, config.max_future_s)
    assert (config.max_past_s, config.max_future_s) == (GATEWAY_LIMITS["max_past_s"], GATEWAY_LIMITS["max_future_s"])
    skew = SkewPolicy()
    assert (skew.max_past_ms, skew.max_future_ms) == (config.max_past_s * 1000, config.max_future_s * 1000)
    assert config.max_past_s == 90 * 86_400 and config.max_future_s == 5 * 60
    limits = section("Limits")
    assert "by default 7 776 000 s (90 days) in the past and 300 s (5 minutes) in the future" in limits
    assert "`max_payload_bytes`, default " + f"{config.max_payload_bytes:,}".replace(",", " ") in limits
    assert config.max_payload_bytes == MAX_PAYLOAD_BYTES == GATEWAY_LIMITS["max_payload_bytes"]
    assert f"at most {MAX_PAYLOAD_BYTES:,} bytes (256 KiB)".replace(",", " ") in section("1.")


def test_the_clock_window_is_inclusive_and_checks_body_timestamps_not_base_ts():
    past, future = NOW - GATEWAY_LIMITS["max_past_s"] * 1000, NOW + GATEWAY_LIMITS["max_future_s"] * 1000

    def at(seq: int, t: int, base: int) -> bytes:
        return encode_signals(VIN, seq, base, [SignalBlock(1, -1, np.array([t]), np.array([500]))])

    got = reasons(
        [topic()] * 5,
        [at(1, past, past), at(2, future, future), at(3, past - 1, past), at(4, future + 1, future), at(5, NOW, 0)],
    )
    assert got == ["", "", "timestamp_skew", "timestamp_skew", ""]
    assert "`base_ts` is not checked" in section("The clock")


def test_the_receipt_settings_named_in_the_spec_are_the_gateways():
    config = GatewayConfig()
    receipts = section("13.1")
    assert f"`receipt_interval_ms` (gateway setting, default {config.receipt_interval_ms} ms)" in receipts
    assert f"(`batch_linger_ms`, default {config.batch_linger_ms} ms)" in receipts
    assert config.receipts is True and "`receipts = false`; the\ndefault is on" in section("13.7")


# -- receipts ------------------------------------------------------------------------------------------


def test_the_receipt_example_decodes_and_its_annotation_is_its_bytes():
    text = section("13.9")
    (payload,) = hex_blocks(text)
    expected = Receipt(VIN, (((3 << 32) | 1, (3 << 32) | 3),), (((3 << 32) | 4, "timestamp_skew"),))
    assert decode_receipt(payload) == expected
    assert encode_receipt(expected) == payload
    assert annotated_bytes(text) == payload
    assert f"in {len(payload)} bytes" in text
    small = encode_receipt(Receipt(VIN, ((1, 3),), ((4, "timestamp_skew"),)))
    assert small.hex().startswith("950110b1") and small[21:].hex().startswith("91920103919204ae")
    assert f"`, {len(small)} bytes." in text


def test_the_receipt_layout_topic_and_kind():
    rows = table(section("13.2"), "#")
    assert [ticked(row[1])[0] for row in rows] == ["version", "kind", "vin", "stored", "rejected"]
    assert rows[0][3] == str(FORMAT_VERSION) and rows[1][3].startswith(f"{RECEIPT_KIND} ")
    assert receipt_topic("<VIN>") == "vi/v1/<VIN>/receipt"
    assert "| topic | `vi/v1/<VIN>/receipt`" in section("13.1")
    assert "| subscribe topic | `vi/v1/<VIN>/receipt`" in section("1.")


def test_the_receipt_size_bounds_and_the_limit_a_head_unit_must_accept():
    text = section("13.3")
    header, per_range, per_rejection = (
        int(x)
        for x in re.search(
            r"at most\s+(\d+) bytes of header, plus at most (\d+) bytes per stored range and "
            r"(\d+) bytes per\s+rejected seq",
            text,
        ).groups()
    )
    top = 2**64 - 1
    longest = max(receipt_reasons(), key=len)
    worst = Receipt(VIN, tuple((top, top) for _ in range(70_000)), tuple((top, longest) for _ in range(70_000)))
    assert len(encode_receipt(worst)) == header + 70_000 * (per_range + per_rejection)  # array32 lists: the worst
    assert len(encode_receipt(Receipt(VIN, ((top, top),), ()))) - len(encode_receipt(Receipt(VIN, (), ()))) == per_range
    limit = number(re.search(r"accept receipts of up to ([\d ]+) bytes", text).group(1))
    assert limit == MAX_PAYLOAD_BYTES
    nine_thousand = Receipt(VIN, (), tuple((top - 2 * i, longest) for i in range(9_000)))
    assert len(encode_receipt(nine_thousand)) <= limit  # "about 9 000 ranges or rejections"
    decode_receipt(encode_receipt(nine_thousand))  # the gateway's own decoder takes it
    with pytest.raises(ReceiptError):
        decode_receipt(bytes(limit + 1))


# -- golden vectors and worked examples -------------------------------------------------------------------


@pytest.mark.parametrize(("title", "name"), [("8.", "signals_v1.hex"), ("9.", "events_v1.hex"), ("12.", "can_v1.hex")])
def test_the_worked_examples_are_the_golden_files_beside_the_spec(title, name):
    text = section(title)
    assert f"[`golden/{name}`](golden/{name})" in text
    golden = bytes.fromhex((SCHEMAS / "golden" / name).read_text().strip())
    assert hex_blocks(text) == [golden]
    assert f"{len(golden)} bytes" in text


def test_the_signals_annotation_is_the_golden_payload():
    assert annotated_bytes(section("8.")) == bytes.fromhex((SCHEMAS / "golden" / "signals_v1.hex").read_text())


def test_every_golden_file_is_referenced_and_every_reference_exists():
    named = set(re.findall(r"golden/([\w.]+\.hex)", SPEC))
    assert named == {p.name for p in (SCHEMAS / "golden").glob("*.hex")}
    assert "schemas/golden" not in SPEC  # paths are relative to the spec, which sits in schemas/
    for path in set(re.findall(r"`(can/[\w./]+)`", SPEC)):
        assert (SCHEMAS / path).exists(), path


def test_quantize_is_the_procedure_the_spec_writes_out():
    """The spec's C quantize, transcribed, against the reference encoder on every exponent."""
    pow10 = [10.0**k for k in range(13)]

    def spec_quantize(value: float, scale_exp: int) -> int:
        y = value * pow10[-scale_exp] if scale_exp < 0 else value / pow10[scale_exp]
        r = math.trunc(y)
        return int(r + (math.copysign(1, y) if abs(y - r) >= 0.5 else 0))

    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(0, 1e3, 400), np.round(rng.normal(0, 100, 400), 2) + 0.05, [0.15, -0.15]])
    for exp in range(-12, 13):
        finite = values[np.abs(values * 10.0**-exp) < 2**52]
        assert quantize(finite, exp).tolist() == [spec_quantize(float(v), exp) for v in finite], exp
    assert quantize(np.array([0.15, 52.34]), -1).tolist() == [2, 523]
    assert 0.15 / 0.1 == 1.4999999999999998 and 0.15 * 10 == 1.5
    assert "0.15 at\n`scale_exp` -1 is `0.15 * 10` = 1.5 in double precision, sent as **2**" in section("4.")


# -- topics, VIN, broker access ---------------------------------------------------------------------------


def test_the_quoted_acl_is_the_deployed_acl():
    deployed = [line for line in ACL.read_text().splitlines() if line.strip() and not line.startswith("#")]
    quoted = [line for block in code_blocks(section("Broker access")) for line in block.splitlines()]
    assert quoted == deployed


def test_topics_and_the_gateways_subscriptions():
    assert MqttSettings("mqtt://x", "id").topic_filters == ("vi/v1/+/signals", "vi/v1/+/events", "vi/v1/+/can")
    assert "The gateway subscribes to `vi/v1/+/signals`, `vi/v1/+/events` and\n`vi/v1/+/can`" in section("1.")
    cols = parse_topics([topic("signals"), topic("events"), topic("can"), topic("receipt"), "vi/v1/SHORT/signals"])
    assert cols.kind.tolist() == [1, 2, 3, 0, 0]
    assert parse_topics([f"vi/v1/{'A' * 130}/signals"]).kind.tolist() == [0]
    assert "is longer than 128 characters" in section("Rejections")


def test_the_vin_check_is_the_alphabet_and_nothing_else():
    alphabet = re.search(r"each one of `([A-Z0-9]+)`", section("The VIN")).group(1)
    every_byte = np.array([bytes([c]) * 17 for c in range(1, 256)], dtype="S17")
    accepted = [bytes([c]).decode("latin-1") for c in range(1, 256) if valid_vins(every_byte)[c - 1]]
    assert sorted(accepted) == sorted(alphabet)
    assert set(alphabet) == set("ABCDEFGHJKLMNPRSTUVWXYZ0123456789")
    # 1M8GDM9AXKP042788 is a textbook VIN with check digit X; a wrong check digit is accepted too
    assert valid_vins(np.array([b"1M8GDM9AXKP042788", b"1M8GDM9A1KP042788"], dtype="S17")).tolist() == [True, True]


# -- trips, cockpit usage, tags --------------------------------------------------------------------------


def test_the_trip_rules_stated_are_the_trip_jobs():
    rules = TripRules()
    ignition = SIGNALS.by_path("Vehicle.LowVoltageSystemState")
    assert ignition.id == 3 and ignition.allowed == ("UNDEFINED", "LOCK", "OFF", "ACC", "ON", "START")
    assert "toUInt8(value IN (4, 5)) AS on_" in TRIPS_SQL
    assert "WHERE u.trip_start >= rg.from_ms - 43200000" in TRIPS_SQL  # "at most 12 hours before"
    assert ">= r.from_ms - 86400000" in TRIPS_SQL  # "the samples of the 24 hours before"
    assert "leadInFrame(on_, 1, 1)" in TRIPS_SQL  # no "off" after the last "on": no trip
    assert (rules.gap_ms, rules.max_state_gap_ms) == (5 * 60_000, 3_600_000)
    assert (rules.harsh_accel_ms2, rules.harsh_brake_ms2) == (3.0, 3.5)
    assert "least(t - pt, %(max_state_gap_ms)s)" in COCKPIT_SIGNALS_SQL
    text = section("14.1")
    assert "more than\n5 minutes apart" in text and "+3.0 m/s² and downward crossings of -3.5 m/s²" in text
    assert 'ON (4) and START (5) count as "on"' in text and "at most 12 hours" in text
    assert "**at most 1 hour per interval**" in section("14.2")


def test_the_trip_signals_named_are_the_catalogs_and_the_trip_jobs():
    named = {int(sid) for path, sid in re.findall(r"`(Vehicle\.[\w.]+)` \((\d+)\)", section("14.1"))}
    for path, sid in re.findall(r"`(Vehicle\.[\w.]+)` \((\d+)\)", section("14.1")):
        assert SIGNALS.by_path(path).id == int(sid), path
    used = _signal_parameters(SIGNALS)
    assert named | {used["ignition"]} == set(used["signal_ids"])


def test_the_cockpit_tables_are_the_feature_jobs():
    text = section("14.2")
    events = {}
    for row in table(text, "feature"):
        feature = ticked(row[0])[0]
        for cell, role in ((row[1], "start"), (row[2], "end")):
            for name, eid in re.findall(r"`(\w+)` \((\d+)\)", cell):
                events[name] = (feature, "point" if "point" in cell else role, "(text)" in row[3])
                assert EVENTS.by_name(name).id == int(eid), name
    assert events == COCKPIT_EVENT_FEATURES
    state_rows = table(text.split("**From state signals.**")[1], "feature")
    states = {int(sid): ticked(row[0])[0] for row in state_rows for sid in re.findall(r"\((\d+)\)", row[1])}
    assert states == {SIGNALS.by_path(p).id: f for p, f in COCKPIT_STATE_FEATURES.items()}
    assert set(COCKPIT_FEATURES) <= set(events_feature for events_feature, _, _ in events.values()) | set(
        states.values()
    )


def test_the_tag_signals_named_are_the_tag_engines():
    params = owner_feature_parameters(SIGNALS, NOW)
    text = section("14.3")
    assert sorted(params["maintenance_ids"]) == [200, 201, 210, 211, 212, 213, 220]
    assert "(200, km)" in text and "(201, s)" in text and "(210-213, kPa)" in text and "(220, V)" in text
    assert "(200, 201, 210-213, 220)" in section("15.")
