"""The identity lookup against the real engine: seq values of every width, and what it finds."""

from __future__ import annotations

import numpy as np

from vehicle_ingest.storage import SignalRows, Store

VINS = ["LKP00000000000001", "LKP00000000000002"]
BASE_MS = 1_795_341_600_000


def test_lookup_of_small_seqs_against_stored_wide_ones(store: Store) -> None:
    """A batch of small seqs must not break against stored wider ones: the bound array's element
    type is inferred from its values (UInt8 for [7]), so the lookup casts it to UInt64."""
    n = 70_000  # message i: vehicle i mod 2, seq i, one sample; seqs beyond UInt16
    store.insert_signals(
        SignalRows(
            VINS,
            (np.arange(n) % 2).astype(np.int32),
            np.arange(n, dtype=np.uint64),
            np.ones(n, np.uint16),
            BASE_MS + np.arange(n, dtype=np.int64),
            np.ones(n),
            BASE_MS,
        )
    )
    seqs = np.array([7, 7, 69_998, 2**64 - 1], np.uint64)
    count, ts_min = store.stored_identities("signals", VINS, np.array([1, 0, 0, 1], np.int32), seqs)
    assert count.tolist() == [1, 0, 1, 0]
    assert ts_min.tolist() == [BASE_MS + 7, 0, BASE_MS + 69_998, 0]
    count, _ = store.stored_identities("signals", VINS, np.array([1, 0], np.int32), np.array([7, 100], np.uint64))
    assert count.tolist() == [1, 1]


def test_joined_and_array_lookups_find_the_same(store: Store) -> None:
    """VINs of the VIN alphabet travel as one comma-joined string; a batch with any other VIN (a comma
    would misalign the split) takes the bound-array path. Both answer the same, 2**64 - 1 included."""
    vins = ["JND00000000000001", "JND00000000000002"]  # not the other test's vehicles (one store per module)
    seqs = np.array([5, 2**64 - 1, 9], np.uint64)
    store.insert_signals(
        SignalRows(
            vins,
            np.array([0, 1, 0], np.int32),
            seqs,
            np.ones(3, np.uint16),
            BASE_MS + np.arange(3),
            np.ones(3),
            BASE_MS,
        )
    )
    wanted = (np.array([0, 1, 1, 0], np.int32), np.array([5, 2**64 - 1, 5, 10], np.uint64))
    joined = store.stored_identities("signals", vins, *wanted)
    hostile = [*vins, "A,B"]  # never a candidate after validation; here it only switches the path
    array = store.stored_identities("signals", hostile, *wanted)
    assert joined[0].tolist() == array[0].tolist() == [1, 1, 0, 0]
    assert joined[1].tolist() == array[1].tolist() == [BASE_MS, BASE_MS + 1, 0, 0]
