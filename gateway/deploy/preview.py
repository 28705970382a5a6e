"""Pictures of the gateway's monitoring for the README, made against a live, loaded gateway.

Starts mosquitto, a gateway (embedded store, file CDP sink, tag cycle every 10 s) and Prometheus
scraping it every second with the real `alerts.yml`, and drives about 90 s of load with the real
simulator: 200 vehicles over the daytime of the latest weekday, replayed at about 630x, with bad
messages and a gateway restart midway. Then it writes

- `dashboard.png`: the Grafana dashboard drawn with matplotlib from the dashboard JSON (its layout,
  queries, legends, units, overrides and thresholds), each query run with /api/v1/query_range;
- `metrics.png`: Prometheus' own graph page, screenshotted by headless Chromium.

    .venv/bin/python gateway/deploy/preview.py --out docs/
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MultipleLocator
from PIL import Image

from vehicle_ingest.catalog import load_signal_catalog
from vehicle_ingest.codec import SignalBlock, encode_signals
from vehicle_ingest.gateway.broker import Mosquitto, free_port, stop_process
from vehicle_ingest.gateway.demo import GatewayProcess
from vehicle_ingest.simulators.fleet import SimMessage
from vehicle_ingest.simulators.publisher import publish

DEPLOY = Path(__file__).resolve().parent
DASHBOARD = DEPLOY / "grafana" / "vehicle-ingest.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
JOB = "vehicle-ingest"
VEHICLES, SIM_S, LOAD_S = 200, 14 * 3600, 80.0  # 06:00-20:00 UTC in 80 s of publishing
BAD, BAD_AT, RESTART_AT, DOWN_S = 30, 30.0, 50.0, 5.0  # bad messages per kind; seconds after the load starts
STEP = 1  # query_range step = scrape interval, as Grafana's $__interval for a few minutes
RATE = "4s"  # Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval)
BG, PANEL, GRID, TEXT = "#111217", "#181b1f", "#2c3036", "#ccccdc"
PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#705DA0", "#37872D"]
NAMED = {"green": "#73BF69", "red": "#F2495C", "orange": "#FF9830", "yellow": "#FADE2A", "blue": "#5794F2"}


T0 = time.monotonic()


def _log(text: str) -> None:
    print(f"[{time.monotonic() - T0:5.1f} s] {text}", flush=True)


def _get(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _wait(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.25)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def _prometheus(work: Path, gateway_port: int) -> Iterator[str]:
    """Prometheus scraping the gateway every second, with the real alert rules loaded."""
    config = work / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {ALERTS}\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{gateway_port}']\n"
    )
    port, binary = free_port(), shutil.which("prometheus")
    if binary is None:
        raise FileNotFoundError("prometheus is not installed (apt-get install prometheus)")
    cmd = [binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}"]
    with (work / "prometheus.log").open("wb") as log:
        process = subprocess.Popen([*cmd, f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait(lambda: process.poll() is None and _ready(f"{base}/-/ready"), "Prometheus")
            yield base
        finally:
            stop_process(process)


def _weekday_end_ms(now: dt.datetime) -> int:
    """20:00 UTC of the latest weekday that is over: commuter peaks and a midday lull, whatever today is."""
    end = now.replace(hour=20, minute=0, second=0, microsecond=0)
    while end > now or end.weekday() >= 5:
        end -= dt.timedelta(days=1)
    return int(end.timestamp() * 1000)


def _bad_messages(n: int, seq0: int) -> list[SimMessage]:
    """`n` each of: malformed payloads, the VIN of another topic, a speed out of range."""
    speed = load_signal_catalog().by_path("Vehicle.Speed")
    vin, other, base = "SMXBADMSG00000001", "SMXBADMSG00000002", time.time_ns() // 1_000_000 - 60_000
    ts = base + np.arange(10, dtype=np.int64) * 1000

    def signals(seq: int, raw: int, topic_vin: str) -> SimMessage:
        payload = encode_signals(vin, seq, base, [SignalBlock(speed.id, speed.scale_exp, ts, np.full(10, raw))])
        return SimMessage(0, f"vi/v1/{topic_vin}/signals", payload, 0, 0, 0.0)

    seqs = range(seq0 + 1, seq0 + n + 1)
    malformed = [SimMessage(0, f"vi/v1/{vin}/signals", b"\xff not msgpack %d" % s, 0, 0, 0.0) for s in seqs]
    return malformed + [signals(s, 500, other) for s in seqs] + [signals(s + n, 10**7, vin) for s in seqs]


def _drive_load(broker: Mosquitto, work: Path, gateways: list[GatewayProcess], port: int) -> tuple[float, str]:
    """Publish the fleet (paced), bad messages and restart the gateway midway; return (start, summary)."""
    end_ms = _weekday_end_ms(dt.datetime.now(dt.UTC))
    owners = work / "owners.csv"
    cmd = [
        sys.executable,
        "-m",
        "vehicle_ingest.gateway.cli",
        "simulate",
        "--mqtt-url",
        broker.url,
        "--vehicles",
        str(VEHICLES),
    ]
    cmd += ["--duration", str(SIM_S), "--speedup", f"{SIM_S / LOAD_S:.1f}", "--end-ms", str(end_ms)]
    with (work / "simulate.log").open("wb") as log:
        sim = subprocess.Popen([*cmd, "--owners", str(owners)], stdout=subprocess.PIPE, stderr=log)
    try:
        _wait(owners.exists, "the fleet's owner registry")
        start = time.time()  # the registry is written just before publishing starts
        _log(f"publishing {VEHICLES} vehicles' {SIM_S / 3600:.0f} simulated hours for {LOAD_S:.0f} s")
        time.sleep(0.5)
        gateways[-1].post("/api/owners", owners.read_bytes())
        # One of each first: a labelled counter starts when first incremented, and rate() needs a previous sample.
        publish(_bad_messages(1, 1000), broker.url, client_prefix="vi-preview-bad")
        time.sleep(max(0.0, start + BAD_AT - time.time()))
        publish(_bad_messages(BAD, 0), broker.url, client_prefix="vi-preview-bad")
        _log(f"published {3 * BAD} bad messages")
        time.sleep(max(0.0, start + RESTART_AT - time.time()))
        _log(f"gateway stopped: exit code {gateways[-1].stop()}")
        time.sleep(DOWN_S)
        _start_gateway(gateways, broker, work, port)
        _log("gateway restarted")
        out, _ = sim.communicate(timeout=LOAD_S * 3)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait()
    if sim.returncode != 0:
        raise RuntimeError(f"the simulator exited with {sim.returncode}: see {work / 'simulate.log'}")
    published = json.loads(out)["messages"]
    stats: dict[str, int] = {}

    def drained() -> bool:
        stats.update(gateways[-1].stats())
        return stats["messages"] >= published

    try:
        _wait(drained, "the gateway to store everything", timeout=120)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}: {published} published, gateway stats {stats}") from None
    time.sleep(5)  # the tail: rates falling back
    day = dt.datetime.fromtimestamp(end_ms / 1000, dt.UTC).strftime("%a %Y-%m-%d")
    summary = (
        f"{VEHICLES} simulated vehicles, 06:00-20:00 UTC of {day} at 1 Hz replayed at {SIM_S / LOAD_S:.0f}x"
        f" ({published:,} messages); {3 * BAD + 3} bad messages, {3 * BAD} at +{BAD_AT:.0f} s; gateway stopped"
        f" at +{RESTART_AT:.0f} s for {DOWN_S:.0f} s. {stats['messages']:,} stored, {stats['rejected']} rejected."
    )
    return start, summary


def _start_gateway(gateways: list[GatewayProcess], broker: Mosquitto, work: Path, port: int) -> None:
    """A gateway on the embedded store in `work`, appended to `gateways` (stopped by `main`) before it is ready."""
    cdp = f"file://{work / 'cdp.jsonl'}"
    extra = ["--tags-interval-s", "10", "--cdp-urls", cdp, "--deliver-interval-s", "2", "--log-level", "WARNING"]
    gateways.append(GatewayProcess(broker.url, f"chdb://{work / 'store'}", port, work / "gateway.log", *extra))
    gateways[-1].wait_ready()


# --- the dashboard, drawn from its JSON ---------------------------------------------------------------------------


def _fmt(v: float, unit: str) -> str:
    """A value as Grafana shows it in `unit` (the units this dashboard uses)."""
    if math.isnan(v):
        return "-"
    if unit == "percentunit":
        return f"{v * 100:.3g}%"
    if unit == "s":
        for limit, scale, name in ((1e-3, 1e-6, "µs"), (1, 1e-3, "ms"), (60, 1, "s"), (3600, 60, "min")):
            if abs(v) < limit:
                return f"{v / scale:.3g} {name}" if v else "0 s"
        return f"{v / 3600:.3g} hour" if abs(v) < 86400 else f"{v / 86400:.3g} day"
    scaled = next((f"{v / f:.3g}{n}" for f, n in ((1e9, " Bil"), (1e6, " Mil"), (1e3, " K")) if abs(v) >= f), None)
    text = scaled or f"{v:.3g}"
    suffix = {"ops": " ops/s", "reqps": " req/s"}.get(unit, unit.removeprefix("suffix:") if ":" in unit else "")
    return text + suffix


def _series(base: str, expr: str, times: np.ndarray) -> list[tuple[dict, np.ndarray]]:
    """A target's series on the grid `times` (NaN where Prometheus has no point: gaps show, as in Grafana)."""
    promql = expr.replace("$__rate_interval", RATE).replace("$job", JOB).replace("$instance", ".*")
    query = urllib.parse.urlencode({"query": promql, "start": times[0], "end": times[-1], "step": STEP})
    out = []
    for r in _get(f"{base}/api/v1/query_range?{query}")["data"]["result"]:
        values = np.full(times.size, np.nan)
        for t, v in r["values"]:
            values[min(round((t - times[0]) / STEP), times.size - 1)] = float(v)
        out.append((r["metric"], values))
    return out


def _legend(fmt: str, labels: dict, expr: str) -> str:
    name = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()
    return name or ("{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else expr)


def _overrides(panel: dict, name: str) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for o in panel["fieldConfig"].get("overrides", []):
        if o["matcher"]["id"] == "byRegexp" and re.fullmatch(o["matcher"]["options"], name):
            props.update({p["id"]: p["value"] for p in o["properties"]})
    return props


def _box(gp: dict, geo: tuple[float, float, float]) -> tuple[float, float, float, float]:
    """A panel's rectangle in inches (left, top, width, height) from its gridPos."""
    col, row, top = geo
    return gp["x"] * col + 0.05, top + gp["y"] * row + 0.05, gp["w"] * col - 0.1, gp["h"] * row - 0.1


def _axes(fig: Figure, left: float, top: float, w: float, h: float) -> Axes:
    fw, fh = fig.get_size_inches()
    return fig.add_axes((left / fw, 1 - (top + h) / fh, w / fw, h / fh))


def _time_axis(ax: Axes, start: float, end: float) -> None:
    ax.set_xlim(start, end)
    ax.xaxis.set_major_locator(MultipleLocator(next(b for b in (10, 15, 20, 30, 60, 120) if (end - start) / b <= 7)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda t, _: dt.datetime.fromtimestamp(t).strftime("%H:%M:%S")))


def _stat(fig: Figure, panel: dict, box: tuple, data: list, times: np.ndarray) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    values = data[0][1] if data else np.array([np.nan])
    valid = values[~np.isnan(values)]
    last = float(valid[-1]) if valid.size else math.nan
    color = PANEL
    for step in defaults["thresholds"]["steps"]:
        if step["value"] is None or (not math.isnan(last) and last >= step["value"]):
            color = NAMED.get(step["color"], step["color"])
    ax = _axes(fig, *box)
    ax.set_facecolor(color if valid.size else PANEL)
    ax.set_xticks([])
    ax.set_yticks([])
    if valid.size > 1:
        ax.fill_between(times, values, color="white", alpha=0.18, lw=0)
        ax.set_ylim(0, max(float(np.nanmax(values)) * 2.2, 1e-9))
        ax.set_xlim(times[0], times[-1])
    ax.text(0.04, 0.9, panel["title"], transform=ax.transAxes, color="white", fontsize=9, va="top")
    text = _fmt(last, defaults["unit"]) if valid.size else "No data"
    ax.text(
        0.5, 0.45, text, transform=ax.transAxes, color="white", fontsize=20, ha="center", va="center", weight="bold"
    )


def _timeseries(fig: Figure, panel: dict, box: tuple, data: list, times: np.ndarray) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    unit, custom = defaults["unit"], defaults["custom"]
    left, top, w, h = box
    placed = [{p["id"]: p["value"] for p in o["properties"]} for o in panel["fieldConfig"]["overrides"]]
    right_unit = next((p.get("unit", unit) for p in placed if p.get("custom.axisPlacement") == "right"), None)
    legend_h = 0.19 * (len(data) + 1) + 0.05
    fw, fh = fig.get_size_inches()
    fig.add_artist(
        Rectangle((left / fw, 1 - (top + h) / fh), w / fw, h / fh, transform=fig.transFigure, color=PANEL, zorder=-1)
    )
    fig.text((left + 0.1) / fw, 1 - (top + 0.08) / fh, panel["title"], color=TEXT, fontsize=9, weight="bold", va="top")
    ax = _axes(fig, left + 0.75, top + 0.35, w - (1.5 if right_unit else 0.9), h - 0.7 - legend_h)
    twin = ax.twinx() if right_unit else None
    bottom = np.zeros_like(times)
    rows = []
    for i, (name, values) in enumerate(data):
        props = _overrides(panel, name)
        color = props.get("color", {}).get("fixedColor") or PALETTE[i % len(PALETTE)]
        color = NAMED.get(color, color)
        target = twin if twin is not None and props.get("custom.axisPlacement") == "right" else ax
        if props.get("custom.drawStyle", custom["drawStyle"]) == "bars":
            base = bottom if custom["stacking"]["mode"] == "normal" else 0
            target.bar(times, np.nan_to_num(values), width=STEP * 0.8, bottom=base, color=color, alpha=0.8)
            bottom = bottom + np.nan_to_num(values) if custom["stacking"]["mode"] == "normal" else bottom
        else:
            style = "--" if "custom.lineStyle" in props else "-"
            target.plot(times, values, color=color, lw=1.2, ls=style)
            target.fill_between(times, values, color=color, alpha=custom["fillOpacity"] / 100, lw=0)
        v = values[~np.isnan(values)]
        row_unit = props.get("unit", unit)
        calcs = [_fmt(float(x), row_unit) for x in (v.mean(), v.max(), v[-1])] if v.size else ["-"] * 3
        rows.append((color, name, calcs))
    for a, u in ((ax, unit), (twin, right_unit)):
        if a is None or u is None:
            continue
        a.set_facecolor(PANEL)
        a.set_ylim(bottom=defaults.get("min", None))
        a.yaxis.set_major_formatter(FuncFormatter(lambda y, _, u=u: _fmt(y, u)))
        if u == "s":  # steps of whole ms / s / min / hours / days, as Grafana picks them
            ymax = a.get_ylim()[1]
            scale = next((x for x in (86400, 3600, 60, 1, 1e-3) if ymax >= 2 * x), 1e-6)
            mag = 10 ** math.floor(math.log10(ymax / scale / 5))
            step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= ymax / scale / 5)
            a.yaxis.set_major_locator(MultipleLocator(step * scale))
        a.tick_params(colors=TEXT, labelsize=8, length=0)
        for spine in a.spines.values():
            spine.set_visible(False)
    ax.grid(color=GRID, lw=0.6)
    ax.set_axisbelow(True)
    _time_axis(ax, times[0], times[-1])
    if not data:
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, color=TEXT, ha="center", va="center")
    y0 = top + h - legend_h
    for j, (color, name, calcs) in enumerate([(None, "", ["Mean", "Max", "Last *"]), *rows]):
        y = 1 - (y0 + 0.19 * j + 0.08) / fh
        if color:
            fig.add_artist(plt.Line2D([(left + 0.12) / fw, (left + 0.3) / fw], [y, y], color=color, lw=3))
        fig.text((left + 0.38) / fw, y, name, color=TEXT, fontsize=8, va="center")
        for k, c in enumerate(calcs):
            fig.text((left + w - 0.15 - 0.95 * (2 - k)) / fw, y, c, color=TEXT, fontsize=8, va="center", ha="right")


def render_dashboard(base: str, start: float, end: float, out: Path, subtitle: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    width, row, top = 18.0, 0.42, 0.9  # inches: 24 grid columns, one grid row, the title
    fh = top + height * row + 0.1
    fig = plt.figure(figsize=(width, fh), facecolor=BG)
    title = "vehicle-ingest dashboard (preview rendered from the Grafana JSON's queries against a live Prometheus)"
    fig.text(0.01, 1 - 0.3 / fh, title, color="white", fontsize=14, weight="bold", va="center")
    fig.text(0.01, 1 - 0.62 / fh, subtitle, color=TEXT, fontsize=9, va="center")
    times = np.arange(start, end + STEP / 2, STEP)
    for panel in panels:
        box = _box(panel["gridPos"], (width / 24, row, top))
        if panel["type"] == "row":
            y = 1 - (box[1] + box[3] / 2) / fh
            fig.text(box[0] / width, y, "⌄ " + panel["title"], color="white", fontsize=11, weight="bold", va="center")
            continue
        data = []
        for t in panel["targets"]:
            for labels, values in _series(base, t["expr"], times):
                data.append((_legend(t.get("legendFormat", ""), labels, t["expr"]), values))
        (_stat if panel["type"] == "stat" else _timeseries)(fig, panel, box, data, times)
    fig.savefig(out, dpi=100, facecolor=BG)
    plt.close(fig)
    Image.open(out).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


def screenshot_prometheus(base: str, start: float, out: Path, work: Path) -> None:
    """Prometheus' graph page with two graphs over the load window, as a browser shows it."""
    minutes = math.ceil((time.time() - start) / 60)
    params = {}
    for i, expr in enumerate(("rate(vehicle_ingest_samples_stored_total[30s])", "vehicle_ingest_unacked_messages")):
        params |= {f"g{i}.expr": expr, f"g{i}.tab": "0", f"g{i}.range_input": f"{minutes}m"}
    url = f"{base}/graph?{urllib.parse.urlencode(params)}"
    flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking"
    flags += " --disable-component-update --disable-sync --hide-scrollbars --window-size=1400,1560"
    flags += " --virtual-time-budget=10000"  # virtual time for the page's scripts to fetch and draw the graphs
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
    cmd = [browser, *flags.split(), f"--user-data-dir={work / 'chromium'}", f"--screenshot={out}", url]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs"), help="directory for dashboard.png and metrics.png")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below on SIGTERM too
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vi-preview-") as tmp, Mosquitto.running(Path(tmp) / "broker") as broker:
        work, port = Path(tmp), free_port()
        gateways: list[GatewayProcess] = []
        try:
            _start_gateway(gateways, broker, work, port)
            with _prometheus(work, port) as prometheus:
                start, summary = _drive_load(broker, work, gateways, port)
                print(summary)
                render_dashboard(prometheus, start - 10, time.time(), args.out / "dashboard.png", summary)
                screenshot_prometheus(prometheus, start - 10, args.out / "metrics.png", work)
        finally:
            for gw in gateways:
                if gw.process.poll() is None:
                    with contextlib.suppress(Exception):
                        gw.stop(30)
                if gw.process.poll() is None:
                    gw.kill()
    for name in ("dashboard.png", "metrics.png"):
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size // 1024} KB)")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
