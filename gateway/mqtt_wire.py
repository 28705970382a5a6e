"""The MQTT 5 packets the gateway's connections use, as bytes (OASIS MQTT 5.0, sections 2 and 3).

CONNECT out, CONNACK in; PUBLISH both ways at QoS 1 (and QoS 0 in); PUBACK both ways; SUBSCRIBE
and UNSUBSCRIBE out, their acks in; PINGREQ out, PINGRESP in; DISCONNECT both ways. Pure
functions and a stream splitter; the connections are in `mqtt_connection`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "CONNACK",
    "DISCONNECT",
    "DISCONNECT_PACKET",
    "PINGREQ_PACKET",
    "PINGRESP",
    "PUBACK",
    "PUBLISH",
    "SUBACK",
    "UNSUBACK",
    "Connack",
    "MqttWireError",
    "Packet",
    "PacketSplitter",
    "Publish",
    "connect_packet",
    "parse_connack",
    "parse_puback",
    "parse_publish",
    "parse_suback",
    "puback_packet",
    "publish_packet",
    "subscribe_packet",
    "unsubscribe_packet",
]

CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK, PINGRESP, DISCONNECT = 2, 3, 4, 9, 11, 13, 14
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"  # normal disconnection: reason code and properties omitted
_MAX_REMAINING = 268_435_455  # the largest remaining length four varint bytes can say

# Property identifier -> how its value is laid out, to step over the ones we do not read.
_BYTE, _U16, _U32, _VARINT, _UTF8, _BINARY, _PAIR = range(7)
_PROPERTY_KINDS = {
    0x01: _BYTE, 0x02: _U32, 0x03: _UTF8, 0x08: _UTF8, 0x09: _BINARY, 0x0B: _VARINT, 0x11: _U32,
    0x12: _UTF8, 0x13: _U16, 0x15: _UTF8, 0x16: _BINARY, 0x17: _BYTE, 0x18: _U32, 0x19: _BYTE,
    0x1A: _UTF8, 0x1C: _UTF8, 0x1F: _UTF8, 0x21: _U16, 0x22: _U16, 0x23: _U16, 0x24: _BYTE,
    0x25: _BYTE, 0x26: _PAIR, 0x27: _U32, 0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}  # fmt: skip
_SESSION_EXPIRY, _RECEIVE_MAXIMUM, _MAXIMUM_PACKET_SIZE = 0x11, 0x21, 0x27


class Packet(NamedTuple):
    kind: int  # the control packet type (high nibble of byte 0)
    flags: int  # the low nibble (PUBLISH: DUP, QoS, RETAIN)
    body: bytes  # everything after the remaining length


class MqttWireError(ValueError):
    """Bytes from the broker that are not the MQTT 5 we expect: the connection is dropped and made again."""


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def connect_packet(client_id: str, keepalive_s: int, session_expiry_s: int = 0, receive_max: int = 0) -> bytes:
    """CONNECT. Without a session expiry: clean start, no session (what is published is idempotent). With
    one: resume the session the broker holds (clean start 0), so unacknowledged messages come back."""
    props = b""
    if session_expiry_s:
        props += bytes([_SESSION_EXPIRY]) + struct.pack(">I", session_expiry_s)
    if receive_max:
        props += bytes([_RECEIVE_MAXIMUM]) + struct.pack(">H", receive_max)
    flags = 0x00 if session_expiry_s else 0x02
    head = _utf8("MQTT") + bytes([5, flags]) + struct.pack(">H", keepalive_s)
    body = head + varint(len(props)) + props + _utf8(client_id)
    return b"\x10" + varint(len(body)) + body


def subscribe_packet(mid: int, topic_filters: list[str], qos: int = 1) -> bytes:
    body = struct.pack(">H", mid) + b"\x00" + b"".join(_utf8(f) + bytes([qos]) for f in topic_filters)
    return b"\x82" + varint(len(body)) + body


def unsubscribe_packet(mid: int, topic_filters: list[str]) -> bytes:
    body = struct.pack(">H", mid) + b"\x00" + b"".join(_utf8(f) for f in topic_filters)
    return b"\xa2" + varint(len(body)) + body


def puback_packet(mid: int) -> bytes:
    """PUBACK, success: the short form (reason code and properties omitted)."""
    return b"\x40\x02" + struct.pack(">H", mid)


def publish_packet(topic: bytes, payload: bytes, mid: int) -> bytes:
    """PUBLISH at QoS 1, not retained, no properties; `topic` already UTF-8. A resend sets DUP (0x08) on byte 0."""
    remaining = 2 + len(topic) + 2 + 1 + len(payload)
    header = b"\x32" + varint(remaining) + struct.pack(">H", len(topic))
    return b"".join((header, topic, struct.pack(">H", mid), b"\x00", payload))


@dataclass(frozen=True, slots=True)
class Connack:
    reason: int  # 0 accepted; >= 0x80 refused
    session_present: bool = False
    receive_maximum: int = 65535  # QoS 1 publishes the broker takes unacknowledged
    maximum_packet_size: int = _MAX_REMAINING + 5


def parse_connack(body: bytes) -> Connack:
    if len(body) < 2:
        raise MqttWireError(f"CONNACK of {len(body)} bytes")
    reason, present = body[1], bool(body[0] & 0x01)
    if len(body) == 2:
        return Connack(reason, present)
    props = _properties(body, 2)
    return Connack(
        reason,
        present,
        props.get(_RECEIVE_MAXIMUM, 65535) or 65535,
        props.get(_MAXIMUM_PACKET_SIZE, _MAX_REMAINING + 5) or _MAX_REMAINING + 5,
    )


def parse_puback(body: bytes) -> tuple[int, int]:
    """(packet id, reason code); the reason is omitted (0, success) in the short form."""
    if len(body) < 2:
        raise MqttWireError(f"PUBACK of {len(body)} bytes")
    return (body[0] << 8) | body[1], body[2] if len(body) > 2 else 0


class Publish(NamedTuple):
    topic: bytes  # UTF-8 as sent; the caller decides what to do with bytes that are not
    mid: int  # 0 at QoS 0
    qos: int
    payload: bytes


def parse_publish(packet: Packet) -> Publish:
    body, qos = packet.body, (packet.flags >> 1) & 0x03
    if qos == 3 or len(body) < 2:
        raise MqttWireError(f"a malformed PUBLISH (QoS {qos}, {len(body)} bytes)")
    end = 2 + ((body[0] << 8) | body[1])
    if end + (2 if qos else 0) > len(body):
        raise MqttWireError("a PUBLISH whose topic or packet id runs past it")
    mid = 0
    if qos:
        mid, end = (body[end] << 8) | body[end + 1], end + 2
    props, at = _read_varint(body, end)
    if at + props > len(body):
        raise MqttWireError("a PUBLISH whose topic or properties run past it")
    return Publish(body[2 : end - (2 if qos else 0)], mid, qos, body[at + props :])


def parse_suback(body: bytes) -> tuple[int, list[int]]:
    """(packet id, reason code per filter): 0-2 granted QoS, >= 0x80 refused."""
    if len(body) < 3:
        raise MqttWireError(f"SUBACK of {len(body)} bytes")
    props, at = _read_varint(body, 2)
    return (body[0] << 8) | body[1], list(body[at + props :])


def _read_varint(data: bytes | bytearray, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    for i in range(at, min(at + 4, len(data))):
        value |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            return value, i + 1
        shift += 7
    raise MqttWireError("a variable byte integer runs past its packet or past 4 bytes")


def _properties(body: bytes, at: int) -> dict[int, int]:
    """The integer properties of a property block (strings and binaries are stepped over)."""
    length, at = _read_varint(body, at)
    end = at + length
    if end > len(body):
        raise MqttWireError("properties run past their packet")
    out: dict[int, int] = {}
    while at < end:
        ident, at = _read_varint(body, at)
        kind = _PROPERTY_KINDS.get(ident)
        if kind is None:
            raise MqttWireError(f"unknown property 0x{ident:02x}")
        if kind in (_BYTE, _U16, _U32):
            size = {_BYTE: 1, _U16: 2, _U32: 4}[kind]
            out[ident] = int.from_bytes(body[at : at + size], "big")
            at += size
        elif kind == _VARINT:
            out[ident], at = _read_varint(body, at)
        else:
            for _ in range(2 if kind == _PAIR else 1):
                at += 2 + int.from_bytes(body[at : at + 2], "big")
    if at != end:
        raise MqttWireError("a property runs past its block")
    return out


class PacketSplitter:
    """Bytes from the socket in, whole packets (type, body) out; keeps a partial packet for the next feed."""

    def __init__(self, max_packet: int = 1 << 20) -> None:
        self._buffer = bytearray()
        self._max = max_packet

    def feed(self, data: bytes) -> list[Packet]:
        buf = self._buffer
        buf += data
        packets: list[Packet] = []
        at = 0
        while len(buf) - at >= 2:
            try:
                length, start = _read_varint(buf, at + 1)
            except MqttWireError:
                if len(buf) - at < 5:
                    break  # the length's bytes have not all arrived yet
                raise
            if length > self._max:
                raise MqttWireError(f"a packet of {length} bytes from the broker (most {self._max})")
            if start + length > len(buf):
                break
            packets.append(Packet(buf[at] >> 4, buf[at] & 0x0F, bytes(buf[start : start + length])))
            at = start + length
        del buf[:at]
        return packets
