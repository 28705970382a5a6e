"""A JSON-lines file sink: one TagChange per line, durable (fsync) before send returns."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from vehicle_ingest.cdp._change import TagChange, redact
from vehicle_ingest.cdp._http import dumps
from vehicle_ingest.cdp._sink import report_request
from vehicle_ingest.errors import DeliveryError

__all__ = ["JsonlSink"]


class JsonlSink:
    """Appends to `path`; retried batches append again (readers dedup by message_id)."""

    def __init__(self, path: Path, *, name: str | None = None, allow_vin: bool = False) -> None:
        self.path = path
        self.name = name or f"file:{path}"
        self._allow_vin = allow_vin

    async def send(self, changes: Sequence[TagChange]) -> None:
        if not changes:
            return
        data = b"".join(dumps(redact(c, self._allow_vin).to_json()) + b"\n" for c in changes)
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as exc:
            report_request(self.name, "error")
            raise DeliveryError(self.name, "error", f"cannot append to {self.path}: {exc}") from exc
        report_request(self.name, "ok")

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        with self.path.open("a+b") as f:
            # A crash mid-write can leave a torn last line; start on a fresh
            # line so the new records stay parseable.
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if created:
            _fsync_dir(self.path.parent)  # the new directory entry must survive a crash too


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
