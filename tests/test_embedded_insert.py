"""Inserts into the embedded engine read the batch's Arrow columns in place, from any store thread."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

from vehicle_ingest.storage import SignalRows, Store

BASE_MS = 1_795_341_600_000
ROWS = 40_000
BATCHES = 12


def _batch(vin: str, batch: int, rng: np.random.Generator) -> SignalRows:
    seq = np.arange(batch * ROWS, (batch + 1) * ROWS, dtype=np.uint64)
    return SignalRows(
        [vin],
        np.zeros(ROWS, np.int32),
        seq,
        np.full(ROWS, 3, np.uint16),
        BASE_MS + seq.astype(np.int64),
        rng.standard_normal(ROWS) * 1e6,
        BASE_MS,
    )


def test_two_connections_inserting_at_once_store_each_batch_exactly(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads on two connections insert at the same time under the same local name: every
    row lands under its own vehicle with its exact value, and no batch passes through a file."""
    # No folder for temporary files: an insert that spooled the batch to disk would fail.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    other = Store.open(store.dsn)
    vins = ["EMB00000000000001", "EMB00000000000002"]
    sent: dict[str, list[np.ndarray]] = {vin: [] for vin in vins}
    errors: list[BaseException] = []

    def insert_all(target: Store, vin: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for batch in range(BATCHES):
                rows = _batch(vin, batch, rng)
                sent[vin].append(rows.value)
                target.insert_signals(rows)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=insert_all, args=(target, vin, seed))
        for seed, (target, vin) in enumerate(zip((store, other), vins, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.close()
    assert errors == []
    for vin in vins:
        stored = store.rows(f"SELECT value FROM signals WHERE vin = '{vin}' ORDER BY seq")
        assert np.array_equal(np.array([r[0] for r in stored]), np.concatenate(sent[vin]))
