"""The fleet report: built from a replayed fleet on the embedded engine, rendered in headless Chromium.

Run as a script to regenerate the README's screenshot from a realistic fleet:
`.venv/bin/python -m tests.test_report docs/report.png` (100 vehicles, 60 days, a tag cycle per day).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from prometheus_client import CollectorRegistry

from tests.helpers import SIGNALS, raw_message, speed_message
from vehicle_ingest.campaigns import Exposure, load_campaign_definitions, save_exposures
from vehicle_ingest.catalog import load_event_catalog
from vehicle_ingest.metrics import Metrics
from vehicle_ingest.owners import save_registry
from vehicle_ingest.pipeline import Pipeline
from vehicle_ingest.report import build_report, fetch_report_data
from vehicle_ingest.simulators.fleet import Fleet, FleetSpec, simulate_fleet
from vehicle_ingest.storage import Store
from vehicle_ingest.tags import TagCycle, load_tag_definitions

EVENTS = load_event_catalog()
DAY = 86_400_000
END = 1_767_225_600_000  # 2026-01-01 00:00 UTC: a fixed clock, so the report is the same on every run
WINDOW = (1280, 2400)
SECTIONS = (
    "Fleet at a glance",
    "Ingestion volume",
    "Rejected messages",
    "Trips and distance",
    "Maintenance due and overdue",
    "Cockpit feature adoption",
    "Owners per tag over time",
    "Campaign uplift on in-car behaviour",
)
# Colours only a drawn chart puts on the page: adopter green, overdue red, signal-messages blue.
CHART_COLOURS = ((0x16, 0xA3, 0x4A), (0xDC, 0x26, 0x26), (0x25, 0x63, 0xEB))


def replay(store: Store, fleet: Fleet, end_ms: int, step_days: int) -> None:
    """The fleet as a gateway lived it: each period's messages stored at its end, a few rejects, one tag cycle."""
    save_registry(store, fleet.ownership)
    ingestor = Pipeline(store, SIGNALS, EVENTS, Metrics.create(CollectorRegistry()))
    cycle = TagCycle(store, SIGNALS, EVENTS, load_tag_definitions())
    messages = sorted(fleet.messages, key=lambda m: m.sim_ts)
    cuts = [*range(fleet.spec.start_ms + step_days * DAY, end_ms, step_days * DAY), end_ms]
    done = 0
    for k, cut in enumerate(cuts):
        upto = next((i for i in range(done, len(messages)) if messages[i].sim_ts > cut), len(messages))
        batch = messages[done:upto] + _rejects(k, cut)
        done = upto
        for lo in range(0, len(batch), 5000):
            chunk = batch[lo : lo + 5000]
            ingestor.ingest([m.topic for m in chunk], [m.payload for m in chunk], cut)
        cycle.run(cut)


def expose(store: Store, at_ms: int) -> None:
    """Every campaign sent at `at_ms` to its audience's members then, less the held-out ones, as a CDP reports it."""
    tags = load_tag_definitions()
    for campaign in load_campaign_definitions(tags):
        members = store.rows(
            "SELECT owner_id FROM tag_history FINAL WHERE tag = %(t)s AND at <= fromUnixTimestamp64Milli(%(at)s, 'UTC')"
            " GROUP BY owner_id HAVING argMax(action, transition) = 'added' AND argMax(holdout, transition) = 0",
            {"t": campaign.audience, "at": at_ms},
        )
        sent = at_ms + 3_600_000
        exposures = [Exposure(f"{campaign.id}|{o}", o, campaign.id, "", "", "file", sent) for (o,) in members]
        save_exposures(store, exposures)


def _rejects(k: int, cut: int) -> list:
    """Messages the gateway must refuse, now and then: garbage, a VIN the topic does not match, a future clock."""
    vin = "1HGBH41JXMN10" + f"{k:04d}"
    bad = []
    if k % 3 == 0:
        bad.append(raw_message(f"vi/v1/{vin}/signals", b"\x00not msgpack %d" % k))
    if k % 5 == 1:
        bad.append(speed_message(vin, k, base_ts=cut - 3_600_000, topic_vin="2HGBH41JXMN109186"))
    if k % 17 == 8:  # a head unit with a broken clock, retrying
        bad += [speed_message(vin, k + i, base_ts=cut + 5 * DAY + i * 60_000) for i in range(4)]
    return bad


def screenshot(index: Path, png: Path, profile: Path, window: tuple[int, int] = WINDOW) -> np.ndarray:
    """Render `index` in headless Chromium; returns the screenshot's pixels (rows, columns, RGB(A) floats)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={window[0]},{window[1]}",
        f"--screenshot={png}",
        index.resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, timeout=90, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert png.exists(), "chromium wrote no screenshot"
    return mpimg.imread(png)


def _has_colour(pixels: np.ndarray, rgb: tuple[int, int, int], min_pixels: int = 200) -> bool:
    target = np.array(rgb) / 255.0
    return int((np.abs(pixels[..., :3] - target).max(axis=-1) < 0.03).sum()) >= min_pixels


def _distinct_colours(pixels: np.ndarray) -> int:
    rgb = np.round(pixels[..., :3] * 255).astype(np.uint32)
    return len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]))


def _charts(index: Path) -> list[tuple[Path, str]]:
    html = index.read_text()
    return [(index.parent / src, alt) for src, alt in re.findall(r'<img src="([^"]+)" alt="([^"]*)"', html)]


# -- fixtures: one store per module (chDB: one data directory per process) ------------------------------------


@pytest.fixture(scope="module")
def empty_report(store, tmp_path_factory) -> Path:
    """Built before `fleet_report` loads anything (it depends on this fixture)."""
    return build_report(store, tmp_path_factory.mktemp("empty-report"), END)


@pytest.fixture(scope="module")
def fleet_report(store, empty_report, tmp_path_factory) -> Path:
    spec = FleetSpec(20, END - 60 * DAY, 60 * 86400.0, sample_hz=0.05, seed=11, message_s=600)
    replay(store, simulate_fleet(spec, SIGNALS, EVENTS), END, step_days=7)
    expose(store, END - 32 * DAY)  # a tag cycle ran then (weekly from the start): windows close before END
    return build_report(store, tmp_path_factory.mktemp("fleet-report"), END)


# -- tests ----------------------------------------------------------------------------------------------------


def test_the_page_has_every_section_and_every_chart_it_references(fleet_report, store):
    html = fleet_report.read_text()
    for title in SECTIONS:
        assert f">{title}</h2>" in html
    charts = _charts(fleet_report)
    assert len(charts) == 7
    for path, alt in charts:
        text = path.read_text()
        assert path.stat().st_size > 10_000 and "<svg" in text[:2000] and "</svg>" in text[-100:], path.name
        assert len(alt) > 40 and "no data" not in alt.lower(), (path.name, alt)
    stats = store.stats()
    assert f"{stats['messages']:,}" in html and f"{stats['samples']:,}" in html
    assert f"{stats['rejected']:,}<small>" in html and stats["rejected"] > 0
    # Offline: nothing to fetch, nothing to run.
    assert not re.search(r"<script|<link|@import|url\(|https?://", html)
    assert not any(re.search(r"<image|@import|url\(https?:", p.read_text()) for p, _ in charts)


def test_figures_agree_with_the_tables_they_summarise(fleet_report, store):
    data = fetch_report_data(store, END)
    first_ms = int(data.trips.days[0].astype("datetime64[ms]").astype(np.int64))
    trips_in_window = store.rows(
        "SELECT count(), sum(distance_km) FROM trips FINAL WHERE is_deleted = 0"
        " AND trip_start >= fromUnixTimestamp64Milli(%(t0)s, 'UTC')"
        " AND trip_start < fromUnixTimestamp64Milli(%(t1)s, 'UTC')",
        {"t0": first_ms, "t1": END},
    )[0]
    assert data.trips.total("trips") == trips_in_window[0] > 0
    assert data.trips.total("km") == pytest.approx(trips_in_window[1])
    assert data.summary.vehicles == 20 and data.summary.owners > 0
    for feature, states in data.adoption.counts.items():  # the three states exclude each other
        assert sum(states.values()) <= data.adoption.owners, feature
    for tag, series in data.tags_over_time.series.items():  # the last day's running count is today's tag count
        assert series[-1] == data.tag_counts.get(tag, 0), tag
    assert len({float(v) for v in data.tags_over_time.series["maintenance_overdue"]}) > 1  # a history, not a dot


def test_the_report_renders_in_headless_chromium(fleet_report, tmp_path):
    pixels = screenshot(fleet_report, tmp_path / "report.png", tmp_path / "profile")
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    assert _distinct_colours(pixels) > 500  # anti-aliased charts and text, not a blank or error page
    for colour in CHART_COLOURS:
        assert _has_colour(pixels, colour), colour
    bottom = pixels[int(WINDOW[1] * 0.8) : int(WINDOW[1] * 0.95), :, :3]
    assert (bottom.std(axis=(0, 1)) > 0.05).any(), "the last chart is cut off or missing"


def test_an_empty_store_gives_a_page_that_says_so(empty_report, tmp_path):
    html = empty_report.read_text()
    for title in SECTIONS:
        assert f">{title}</h2>" in html
    charts = _charts(empty_report)
    assert len(charts) == 7 and all(p.stat().st_size > 1000 and "no data yet" in alt for p, alt in charts)
    pixels = screenshot(empty_report, tmp_path / "empty.png", tmp_path / "profile")
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    assert _distinct_colours(pixels) > 50


def test_the_command_writes_the_report_and_prints_its_path(tmp_path):
    # Its own process: this module's process already holds the embedded engine for another directory.
    program = (
        "import argparse, sys\n"
        "from vehicle_ingest.gateway.report_cli import add_report_parser\n"
        "parser = argparse.ArgumentParser()\n"
        "add_report_parser(parser.add_subparsers(dest='command', required=True))\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.func(args))\n"
    )
    out = tmp_path / "out"
    argv = ["report", "--out", str(out), "--store", f"chdb://{tmp_path / 'store'}", "--as-of-ms", str(END)]
    missing = subprocess.run([sys.executable, "-c", program, *argv], capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "no store at" in missing.stderr  # a read never creates a store
    assert not (tmp_path / "store").exists()
    create = f"from vehicle_ingest.storage import Store; Store.open('chdb://{tmp_path / 'store'}').migrate()"
    subprocess.run([sys.executable, "-c", create], check=True, timeout=120)
    done = subprocess.run([sys.executable, "-c", program, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out / "index.html")
    assert "no data yet" in (out / "index.html").read_text()


# -- the README's screenshot ----------------------------------------------------------------------------------


def _crop_and_save(png: Path, target: Path) -> None:
    """Trim the empty page bottom and store as a 256-colour PNG (a screenshot of flat charts compresses well)."""
    from PIL import Image

    pixels = mpimg.imread(png)[..., :3]
    background = pixels[-1, 0]
    used = np.nonzero((np.abs(pixels - background).max(axis=-1) > 0.02).any(axis=1))[0]
    bottom = min(int(used[-1]) + 24, pixels.shape[0]) if len(used) else pixels.shape[0]
    with Image.open(png) as image:
        cropped = image.convert("RGB").crop((0, 0, image.width, bottom))
        cropped.quantize(colors=256, dither=Image.Dither.NONE).save(target, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a replayed fleet's report and screenshot it.")
    parser.add_argument("png", type=Path)
    parser.add_argument("--vehicles", type=int, default=100)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--step-days", type=int, default=1, help="days between tag cycles")
    parser.add_argument("--keep", type=Path, help="keep the report folder here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = Store.open(f"chdb://{work / 'store'}")
        store.migrate()
        spec = FleetSpec(args.vehicles, END - args.days * DAY, args.days * 86400.0, 0.05, seed=3, message_s=600)
        replay(store, simulate_fleet(spec, SIGNALS, EVENTS), END, args.step_days)
        expose(store, END - 32 * DAY)
        index = build_report(store, args.keep or work / "report", END)
        store.close()
        screenshot(index, work / "shot.png", work / "profile", (WINDOW[0], 2600))
        _crop_and_save(work / "shot.png", args.png)
    print(f"{args.png}: {args.png.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
