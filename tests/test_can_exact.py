"""CAN decoding at the edges cantools defines: exact integers, scaled multiplexers, declared lengths."""

from __future__ import annotations

import cantools
import numpy as np
import pytest

from vehicle_ingest.can import Manifest, SignalValues, decode_frames, decode_frames_reference, frame_key
from vehicle_ingest.can.manifest import manifest_from_database
from vehicle_ingest.can.mapping import MappingRule, compile_mapping
from vehicle_ingest.catalog import load_signal_catalog
from vehicle_ingest.errors import CatalogError

DBC = """VERSION ""
BS_:
BU_: ECU
BO_ 256 Wide: 8 ECU
 SG_ Counter64 : 0|64@1- (1,0) [0|0] "" ECU
BO_ 257 Scaled: 8 ECU
 SG_ Big : 0|60@1+ (4,-3) [0|0] "" ECU
 SG_ Tail : 60|4@1+ (1,0) [0|0] "" ECU
BO_ 258 Unsigned: 8 ECU
 SG_ U64 : 7|64@0+ (1,0) [0|0] "" ECU
BO_ 259 Paged: 8 ECU
 SG_ Page M : 0|8@1+ (2,0) [0|0] "" ECU
 SG_ PageOne m1 : 8|8@1+ (1,0) [0|0] "" ECU
 SG_ PageTwo m2 : 8|8@1+ (1,0) [0|0] "" ECU
BO_ 260 Short: 2 ECU
 SG_ Inside : 0|8@1+ (1,0) [0|0] "" ECU
 SG_ Beyond : 16|8@1+ (1,0) [0|0] "" ECU
"""
DB = cantools.database.load_string(DBC, database_format="dbc", strict=False)
MANIFEST: Manifest = manifest_from_database([DB])
NAMES = MANIFEST.qualified_names()


def decode(frame_id: int, frames: list[bytes]) -> SignalValues:
    """Both twins, every column equal."""
    args = (
        frame_key(np.full(len(frames), frame_id), np.zeros(len(frames), bool)),
        np.frombuffer(b"".join(frames), dtype=np.uint8),
        np.array([len(f) for f in frames]),
    )
    fast, ref = decode_frames(MANIFEST, *args), decode_frames_reference(MANIFEST, *args)
    for column in SignalValues.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(fast, column), getattr(ref, column), err_msg=column)
    return fast


def ours(out: SignalValues, frame: int = 0) -> dict[str, tuple[int, float]]:
    rows = np.flatnonzero(out.frame == frame)
    return {NAMES[out.signal[i]].split(".")[1]: (int(out.integer[i]), float(out.value[i])) for i in rows.tolist()}


@pytest.mark.parametrize("raw", [2**63 - 1, -(2**63), 2**53 + 1, -(2**53) - 3, 123])
def test_a_64_bit_integer_signal_keeps_its_exact_value(raw: int) -> None:
    frame = raw.to_bytes(8, "little", signed=True)
    exact, value = ours(decode(256, [frame]))["Counter64"]
    theirs = DB.get_message_by_name("Wide").decode(frame, decode_choices=False)["Counter64"]
    assert type(theirs) is int and exact == theirs == raw
    assert value == float(theirs)  # one rounding, as cantools' float(int)


def test_integer_factor_and_offset_give_exact_values() -> None:
    frame = ((1 << 60) - 1 | (0xA << 60)).to_bytes(8, "little")
    got = ours(decode(257, [frame]))
    theirs = DB.get_message_by_name("Scaled").decode(frame, decode_choices=False)
    assert got["Big"][0] == theirs["Big"] == ((1 << 60) - 1) * 4 - 3  # beyond 2**53: float64 would round
    assert got["Big"][1] == float(theirs["Big"]) and got["Tail"] == (10, 10.0)


def test_an_unsigned_64_bit_identity_signal_is_exact_in_raw() -> None:
    """Its results reach 2**64 - 1, past int64: not an integer signal; `raw` holds its uint64 bits."""
    frame = (2**64 - 5).to_bytes(8, "big")
    out = decode(258, [frame])
    assert not MANIFEST.sig_integer[NAMES.index("Unsigned.U64")]
    assert int(out.integer[0]) == 0 and int(out.raw.view(np.uint64)[0]) == 2**64 - 5
    assert DB.get_message_by_name("Unsigned").decode(frame, decode_choices=False)["U64"] == 2**64 - 5


def test_a_scaled_multiplexer_selects_by_its_raw_value() -> None:
    """The DBC's rule and cantools' with scaling=False; cantools with scaling=True selects by the
    scaled value (raw 1 * factor 2 = 2: page two). The difference is documented in manifest.py."""
    frame = bytes([1, 77, 0, 0, 0, 0, 0, 0])
    message = DB.get_message_by_name("Paged")
    assert set(ours(decode(259, [frame]))) == {"Page", "PageOne"}
    assert set(message.decode(frame, decode_choices=False, scaling=False)) == {"Page", "PageOne"}
    assert set(message.decode(frame, decode_choices=False, scaling=True)) == {"Page", "PageTwo"}


def test_a_signal_beyond_the_declared_length_is_left_out() -> None:
    assert "Short.Beyond" not in NAMES and "Short.Inside" in NAMES
    assert any(s.startswith("Short.Beyond: lies beyond") for s in MANIFEST.skipped)
    frame = bytes([7, 1, 2, 3, 4, 5, 6, 8])  # the bytes are there, but the DBC says the message has 2
    assert ours(decode(260, [frame])) == {"Inside": (7, 7.0)}
    with pytest.raises(cantools.database.DecodeError):
        DB.get_message_by_name("Short").decode(frame)


def test_a_mapping_naming_a_left_out_signal_says_why() -> None:
    rule = MappingRule("Short", "Beyond", "Vehicle.Speed")
    with pytest.raises(CatalogError, match=r"Short\.Beyond: lies beyond the message.s declared length"):
        compile_mapping([rule], MANIFEST, load_signal_catalog(), "mapping.toml")
