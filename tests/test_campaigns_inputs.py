"""What comes in for campaigns, checked without a store: exposure events (Segment, Sensors, exports), hostile ones
refused with a reason, campaign definitions, and the holdout flag on what goes out to the CDP."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from vehicle_ingest.campaigns import (
    DEFAULT_EXPOSURE_EVENTS,
    load_campaign_definitions,
    parse_exposure_body,
    parse_exposure_file,
    parse_exposure_rows,
)
from vehicle_ingest.cdp import TagChange
from vehicle_ingest.cdp._segment import segment_messages
from vehicle_ingest.cdp._sensors import sensors_record
from vehicle_ingest.errors import CatalogError
from vehicle_ingest.tags import load_tag_definitions

NOW = 1_767_225_600_000
NAMES = DEFAULT_EXPOSURE_EVENTS


def _track(**overrides) -> dict:
    event = {
        "type": "track",
        "event": "Campaign Exposed",
        "userId": "owner-1",
        "messageId": "m-1",
        "timestamp": "2025-12-31T10:00:00Z",
        "properties": {"campaign_id": "voice_tutorial", "variant": "A"},
    }
    return {**event, **overrides}


def test_segment_single_batch_and_list_bodies_give_the_same_exposure():
    one = parse_exposure_body(json.dumps(_track()).encode(), NAMES, NOW)
    batch = parse_exposure_body(json.dumps({"batch": [_track()], "sentAt": "x"}).encode(), NAMES, NOW)
    listed = parse_exposure_body(json.dumps([_track()]).encode(), NAMES, NOW)
    assert one.exposures == batch.exposures == listed.exposures
    e = one.exposures[0]
    assert (e.message_id, e.owner_id, e.campaign_id) == ("m-1", "owner-1", "voice_tutorial")
    assert (e.variant, e.source) == ("A", "segment")
    assert e.exposed_at_ms == NOW - 14 * 3_600_000
    viewed = _track(event="Experiment Viewed", properties={"experiment_id": "voice_tutorial", "variation_name": "B"})
    assert parse_exposure_body(json.dumps(viewed).encode(), NAMES, NOW).exposures[0].variant == "B"


def test_sensors_events_one_per_line_get_a_stable_identity():
    record = {"type": "track", "event": "Campaign Exposed", "distinct_id": "owner-2", "time": NOW - 1000,
              "_track_id": 12345, "properties": {"campaign_id": "service_reminder"}}  # fmt: skip
    body = (json.dumps(record) + "\n" + json.dumps({**record, "type": "profile_set"}) + "\n").encode()
    first, again = parse_exposure_body(body, NAMES, NOW), parse_exposure_body(body, NAMES, NOW)
    assert first.exposures == again.exposures and first.ignored == 1  # a redelivered record keeps its id
    assert first.exposures[0].source == "sensors" and first.exposures[0].message_id.startswith("sensors:")


def test_bad_events_are_refused_one_by_one_with_a_reason_and_others_ignored():
    events = [
        _track(userId="x" * 5_000),  # an id longer than any CRM's key
        _track(userId="owner\x1b[2J"),  # a terminal escape
        _track(messageId=""),
        _track(properties={"variant": "A"}),
        _track(timestamp="yesterday"),
        _track(timestamp="2031-01-01T00:00:00Z"),
        _track(properties=["not", "an", "object"]),
        "not an object",
        _track(event="Order Completed"),  # another event: ignored, not refused
        {"type": "identify", "userId": "owner-1"},
        _track(properties={"campaign_id": "voice_tutorial", "blob": "y" * 40_000}),
        _track(messageId="m-ok"),
        _track(userId="x" * 300_000),  # a huge event
    ]
    parsed = parse_exposure_body(json.dumps({"batch": events}).encode(), NAMES, NOW)
    assert [e.message_id for e in parsed.exposures] == ["m-ok"] and parsed.ignored == 2
    reasons = {r.index: r.reason for r in parsed.refused}
    assert reasons == {
        0: "bad_owner_id", 1: "bad_owner_id", 2: "missing_message_id", 3: "missing_campaign_id", 4: "bad_timestamp",
        5: "bad_timestamp", 6: "malformed", 7: "malformed", 10: "oversize", 12: "oversize",
    }  # fmt: skip
    summary = json.dumps(parsed.summary())
    assert "x" * 300 not in summary and "\x1b" not in summary and len(summary) < 4000  # never echoes the value
    for bad in (b"\xff\xfe", b"{not json", b'{"batch": "x"}', b"42"):
        with pytest.raises(ValueError):
            parse_exposure_body(bad, NAMES, NOW)


def test_export_files_csv_and_json_rows_with_derived_ids(tmp_path: Path):
    csv_text = "owner_id;campaign_id;exposed_at;variant\nowner-1;voice_tutorial;2025-12-30T08:00:00;A\n;x;1\n"
    parsed = parse_exposure_file(("\ufeff" + csv_text).encode(), NAMES, NOW)
    assert len(parsed.exposures) == 1 and [r.reason for r in parsed.refused] == ["missing_owner_id"]
    row = {"owner_id": "owner-1", "campaign_id": "voice_tutorial", "exposed_at": "2025-12-30T08:00:00", "variant": "A"}
    rows = [row]
    from_json = parse_exposure_file(json.dumps(rows).encode(), NAMES, NOW)
    assert from_json.exposures == parsed.exposures  # same row, same derived id: loading twice stores it once
    assert parsed.exposures[0].message_id.startswith("file:")
    named = dataclasses.replace(parsed.exposures[0], event="Campaign Exposed", source="file")
    assert parse_exposure_rows([named.to_row()], NAMES, NOW).exposures == [named]  # what the CLI sends a gateway
    with pytest.raises(ValueError, match="exposed_at"):
        parse_exposure_file(b"owner_id,campaign_id\nowner-1,c\n", NAMES, NOW)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaigns.toml"
    path.write_text(text)
    return path


CAMPAIGN = 'id = "c"\ndescription = "d"\naudience = "{audience}"\noutcome = {outcome}\nwindow_days = {window}\n'


@pytest.mark.parametrize(
    ("audience", "outcome", "window", "problem"),
    [
        ("nope", '{ lost = "maintenance_overdue" }', 14, "not a tag"),
        ("dormant", '{ lost = "maintenance_overdue" }', 14, "has no holdout"),
        ("maintenance_overdue", '{ lost = "nope" }', 14, "not in tags.toml"),
        ("maintenance_overdue", '{ feature = "smiles" }', 14, "unknown outcome feature"),
        ("maintenance_overdue", '{ lost = "dormant", feature = "km" }', 14, "exactly one"),
        ("maintenance_overdue", '{ lost = "dormant", at_least = 1 }', 14, "only for a feature"),
        ("maintenance_overdue", '{ feature = "km" }', 0, "window_days"),
    ],
)
def test_campaign_definitions_are_checked_against_the_tags(tmp_path, audience, outcome, window, problem):
    text = "[[campaign]]\n" + CAMPAIGN.format(audience=audience, outcome=outcome, window=window)
    with pytest.raises(CatalogError, match=problem):
        load_campaign_definitions(load_tag_definitions(), _write(tmp_path, text))


def test_the_shipped_campaigns_load_and_their_audiences_have_holdouts():
    tags = {t.id: t for t in load_tag_definitions()}
    campaigns = load_campaign_definitions(tags.values())
    assert len(campaigns) >= 3 and all(tags[c.audience].holdout > 0 for c in campaigns)


def test_a_held_out_owners_change_tells_the_cdp_so():
    change = TagChange("m-1", "owner-1", "adoption.voice.never_used", "added", {"owned_days": 40},
                       {"tags": ["adoption.voice.never_used"], "tag_count": 1,
                        "holdouts": ["adoption.voice.never_used"]}, NOW, 0, holdout=True)  # fmt: skip
    identify, track = (json.loads(m) for m in segment_messages(change))
    assert track["properties"]["holdout"] is True and identify["traits"]["holdouts"] == ["adoption.voice.never_used"]
    record = sensors_record(change, "default")
    assert record["properties"]["tag_adoption_voice_never_used_holdout"] is True
    assert TagChange.from_json(change.to_json()) == change
    reached = TagChange("m-2", "owner-2", "adoption.voice.never_used", "added", {}, {}, NOW)
    assert "holdout" not in json.loads(segment_messages(reached)[1])["properties"]  # absent: not held out


@pytest.mark.parametrize(
    ("holdout", "problem"),
    [
        ('[holdout.shares]\n"nope" = 0.1\n', "unknown tag id"),
        ('[holdout.shares]\n"dormant" = 1.0\n', "from 0 up to"),
        ('[holdout]\nsalt = ""\n', "salt"),
    ],
)
def test_holdout_settings_in_tags_toml_are_checked(tmp_path, holdout, problem):
    shipped = (Path(__file__).parents[1] / "schemas" / "tags.toml").read_text()
    without = re.sub(r"^\[holdout\]$.*?(?=^\[features\]$)", "", shipped, count=1, flags=re.M | re.S)
    path = tmp_path / "tags.toml"
    path.write_text(without.replace("version = 1\n", "version = 1\n\n" + holdout, 1))
    with pytest.raises(CatalogError, match=problem):
        load_tag_definitions(path)
