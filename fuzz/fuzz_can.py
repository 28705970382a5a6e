"""atheris fuzz target: the CAN payload decoder (kind 3) and the CAN signal decoder.

    python fuzz/fuzz_can.py -atheris_runs=100000 [-seed=1] [CORPUS_DIR]

Each input is one of:
  0 + bytes       a payload for `decode_can`
  1 + bytes       the same bytes after a valid CAN header (reaches the body parser)
  2 + bytes       frames (id choice, length, data) for `decode_frames` against DBC manifests
                  (ours; and from opendbc, when installed, one with multiplexing and one with CAN FD)
For every input the numba decoder must not crash and must equal its plain-Python reference twin.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris
import numpy as np
from _compare import same_array  # fuzz/ is on sys.path: harnesses run as scripts

from vehicle_ingest.can import decode_frames, decode_frames_reference, load_manifest
from vehicle_ingest.codec import decode_can, decode_can_reference, encode_can

ROOT = Path(__file__).resolve().parents[1]
HEADER = bytes.fromhex("960103b15756575a5a5a314a5a5857303030303031cf0000000300000003cf000001a202b2c500")
MESSAGE_COLUMNS = ("status", "error_offset", "kind", "vin", "seq", "base_ts", "ts_min", "ts_max", "n_items")
FRAME_COLUMNS = ("msg", "ts", "bus", "arb_id", "extended", "fd", "dlc", "length", "data_start", "data")
SIGNAL_COLUMNS = ("frame", "signal", "raw", "value", "known", "integer")


def _manifests() -> list:
    paths = [[ROOT / "schemas" / "can" / "vi_sim_powertrain.dbc"]]
    try:
        import opendbc

        dbc = Path(opendbc.__file__).parent / "dbc"
        paths += [[dbc / "vw_pq.dbc"], [dbc / "FORD_CADS_64.dbc"]]
    except ImportError:
        pass
    return [load_manifest(p) for p in paths]


MANIFESTS = _manifests()


def _same(a: object, b: object, columns: tuple[str, ...], what: str) -> None:
    for name in columns:
        x, y = getattr(a, name), getattr(b, name)
        if not same_array(x, y, nan_equal=True):
            raise AssertionError(f"{what}: column {name} differs: numba {x!r} reference {y!r}")


def _payload(data: bytes) -> None:
    fast, ref = decode_can([data]), decode_can_reference([data])
    _same(fast.messages, ref.messages, MESSAGE_COLUMNS, "decode_can messages")
    _same(fast.frames, ref.frames, FRAME_COLUMNS, "decode_can frames")


def _frames(fdp: atheris.FuzzedDataProvider) -> None:
    manifest = MANIFESTS[fdp.ConsumeIntInRange(0, len(MANIFESTS) - 1)]
    keys, chunks = [], []
    for _ in range(fdp.ConsumeIntInRange(0, 32)):
        pick = fdp.ConsumeIntInRange(0, manifest.n_messages)  # n_messages: an id the DBC does not define
        keys.append(int(manifest.msg_key[pick]) if pick < manifest.n_messages else fdp.ConsumeIntInRange(0, 2**32 - 1))
        chunks.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)))
    k = np.array(keys, dtype=np.uint32)
    data = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    lengths = np.array([len(c) for c in chunks], dtype=np.int64)
    fast, ref = decode_frames(manifest, k, data, lengths), decode_frames_reference(manifest, k, data, lengths)
    _same(fast, ref, SIGNAL_COLUMNS, "decode_frames")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    if mode == 0:
        _payload(rest)
    elif mode == 1:
        _payload(HEADER + rest)
    else:
        _frames(atheris.FuzzedDataProvider(rest))


def _warm_up() -> None:
    """Compile every numba kernel before coverage instrumentation rewrites Python bytecode (numba reads it)."""
    payload = encode_can("WVWZZZ1JZXW000001", 1, 0, [0, 1], [0x0C8, 0x2F0], bytes(16), [8, 8])
    _payload(payload)
    for m in MANIFESTS:
        k = np.repeat(m.msg_key[:4], 2)
        lengths = np.tile([8, 64], len(k) // 2)
        data = np.frombuffer(bytes(int(lengths.sum())), np.uint8)  # read-only, as below: its own numba type
        decode_frames(m, np.ascontiguousarray(k, np.uint32), data, lengths.astype(np.int64))


def main() -> None:
    _warm_up()
    atheris.instrument_all()  # coverage of the reference decoders guides the mutations
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
