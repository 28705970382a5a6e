"""`--workers N`: N gateway processes on one MQTT 5 shared subscription, supervised.

The broker splits the stream between the members of the share group. Each
worker is an ordinary gateway process with its own client id, so the broker
keeps a persistent session per worker: messages a worker took but never
acked stay in that session and are redelivered when the worker comes back.
That is why a worker that dies is restarted under the same client id, and
why exactly-once holds across workers (each message belongs to one session).

With an embedded store every worker owns a shard directory (chDB locks a
directory to one process); with a ClickHouse server they share its tables.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from vehicle_ingest.gateway.broker import stop_process
from vehicle_ingest.gateway.config import SECRET_SETTINGS, GatewayConfig, env_name, flag_name, settings

__all__ = ["DEFAULT_SHARE_GROUP", "run_workers", "worker_config"]

log = logging.getLogger("vehicle_ingest.workers")

DEFAULT_SHARE_GROUP = "vehicle-ingest"
_RESTART_DELAY_S = 1.0
_PR_SET_PDEATHSIG = 1


def worker_config(config: GatewayConfig, k: int) -> GatewayConfig:
    """The configuration of worker `k` of `config.workers`."""
    store = config.store
    if store.startswith("chdb://"):
        store = f"chdb://{Path(store.removeprefix('chdb://')) / f'worker-{k}'}"
    # Tags need every owner's data in one store: on shards they would see a fraction of each fleet.
    tags_here = k == 0 and not config.store.startswith("chdb://")
    return dataclasses.replace(
        config,
        workers=1,
        client_id=f"{config.mqtt_client_id}-{k}",
        share_group=config.share_group or DEFAULT_SHARE_GROUP,
        http_port=config.http_port + k if config.http_port else 0,  # 0: each its own free port
        store=store,
        tags_interval_s=config.tags_interval_s if tags_here else 0,
        cdp_urls=config.cdp_urls if tags_here else "",
    )


def _argv(config: GatewayConfig) -> list[str]:
    argv = [sys.executable, "-m", "vehicle_ingest.gateway.cli", "gateway"]
    for s in (s for s in settings() if s.name not in SECRET_SETTINGS):
        value = getattr(config, s.name)
        argv += [flag_name(s.name), str(int(value)) if isinstance(value, bool) else str(value)]
    return argv


def _env(config: GatewayConfig) -> dict[str, str]:
    """Secrets reach a worker through its environment: a command line is readable by every local user."""
    return {**os.environ, **{env_name(name): str(getattr(config, name)) for name in SECRET_SETTINGS}}


def _die_with_parent() -> None:
    """In the child: SIGTERM when the supervisor dies, even by SIGKILL (Linux PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _Supervisor:
    def __init__(self, config: GatewayConfig) -> None:
        self.configs = [worker_config(config, k) for k in range(config.workers)]
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * config.workers
        self.stopping = False

    def start(self, k: int) -> None:
        process = subprocess.Popen(_argv(self.configs[k]), env=_env(self.configs[k]), preexec_fn=_die_with_parent)
        self.processes[k] = process
        log.info("worker %d started", k, extra={"pid": process.pid, "client_id": self.configs[k].client_id})

    def watch(self) -> None:
        while not self.stopping:
            for k, process in enumerate(self.processes):
                if process is not None and process.poll() is not None and not self.stopping:
                    code = process.returncode
                    log.error("worker %d exited with %s; restarting it (its broker session resumes)", k, code)
                    time.sleep(_RESTART_DELAY_S)
                    self.start(k)
            time.sleep(0.2)

    def stop(self, *_args: object) -> None:
        self.stopping = True
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        codes = []
        for process in self.processes:
            if process is not None:
                stop_process(process, timeout=120)
                codes.append(process.returncode)
        return max((c for c in codes if c is not None and c > 0), default=0)


def run_workers(config: GatewayConfig) -> int:
    """Start `config.workers` gateways, restart any that dies, stop all on SIGTERM/SIGINT; the worst exit code."""
    if config.store.startswith("chdb://"):
        log.warning("workers on an embedded store: each owns a shard; tags and CDP are off (use a server store)")
    supervisor = _Supervisor(config)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    for k in range(config.workers):
        supervisor.start(k)
    supervisor.watch()
    return supervisor.wait()
