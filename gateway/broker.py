"""Start a local mosquitto for the demo and the tests (never used by the gateway itself)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Mosquitto", "free_port", "mosquitto_path", "stop_process", "wait_for_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Mosquitto:
    """A mosquitto process on 127.0.0.1:port; `persistence` keeps sessions across its restarts.

    With persistence, mosquitto writes its in-memory state to mosquitto.db every
    `autosave_interval` seconds and when it stops gracefully (SIGTERM): a kill -9
    loses what changed since the last save.
    """

    workdir: Path
    port: int
    persistence: bool = False
    process: subprocess.Popen[bytes] | None = None
    autosave_interval_s: int = 1800  # mosquitto's default
    extra_config: tuple[str, ...] = ()  # more mosquitto.conf lines (a test's limits)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # As root, mosquitto drops to the `mosquitto` user, which cannot write
        # a persistence file or log into a root-owned (test) directory.
        lines = ["user root"] if os.geteuid() == 0 else []
        lines += [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_queued_messages 1000000",
            "max_inflight_messages 0",
            "persistent_client_expiration 1d",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            f"autosave_interval {self.autosave_interval_s}",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            *self.extra_config,
        ]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        binary = mosquitto_path()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        self.process = subprocess.Popen(
            [binary, "-c", str(self._config())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process:
            stop_process(self.process)
        self.process = None

    def kill(self) -> None:
        """kill -9: no final save of the persistence file."""
        if self.process:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    @classmethod
    @contextmanager
    def running(cls, workdir: Path, persistence: bool = False) -> Iterator[Mosquitto]:
        broker = cls(workdir, free_port(), persistence)
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()
