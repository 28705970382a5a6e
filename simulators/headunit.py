"""What a receipt-aware head unit keeps: every message it sent, until a receipt from the gateway covers it.

The broker's PUBACK only says the broker holds a message. A head unit that follows the wire
format (schemas/WIRE_FORMAT.md section 13) keeps its copy until a receipt says the message is
stored (or rejected for good), resends what is not covered after a reconnect or a timeout, and
can then report exactly what reached the store. `Outstanding` is that buffer, shared by the
connections of one simulated fleet; it is safe to use from paho's threads and the caller's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from vehicle_ingest.receipts import ReceiptError, decode_receipt, message_identity
from vehicle_ingest.simulators.fleet import SimMessage

__all__ = ["Outstanding", "Settled"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Entry:
    message: SimMessage
    sent_at: float
    attempts: int = 1


@dataclass
class Settled:
    """What receipts confirmed: messages stored (with their samples) and messages rejected, by reason."""

    stored: list[SimMessage] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    resent: int = 0  # copies sent again after a timeout or a reconnect
    bad_receipts: int = 0  # payloads on a receipt topic that were not receipts (logged, ignored)


class Outstanding:
    """Messages sent and not yet covered by a receipt, keyed by (VIN, seq)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_vin: dict[str, dict[int, _Entry]] = {}
        self._count = 0
        self.settled = Settled()
        self.unkeyed: list[SimMessage] = []  # no readable header: no receipt can ever cover them

    def __len__(self) -> int:
        return self._count

    def sent(self, message: SimMessage) -> bool:
        """Keep `message` until it is receipted; False when it has no (VIN, seq) a receipt could name."""
        identity = message_identity(message.payload)
        if identity is None:
            with self._lock:
                self.unkeyed.append(message)
            return False
        vin, seq = identity
        with self._lock:
            entries = self._by_vin.setdefault(vin, {})
            if seq in entries:
                entries[seq].attempts += 1
                entries[seq].sent_at = time.monotonic()
            else:
                entries[seq] = _Entry(message, time.monotonic())
                self._count += 1
        return True

    def on_receipt(self, payload: bytes) -> int:
        """Settle what the receipt covers; returns how many messages it settled (a copy receipted twice: once)."""
        try:
            receipt = decode_receipt(payload)
        except ReceiptError as exc:
            log.warning("ignored a payload on a receipt topic: %s", exc)
            with self._lock:
                self.settled.bad_receipts += 1
            return 0
        rejected = dict(receipt.rejected)
        with self._lock:
            entries = self._by_vin.get(receipt.vin, {})
            covered = [s for s in entries if s in rejected or any(a <= s <= b for a, b in receipt.stored)]
            for seq in covered:
                entry = entries.pop(seq)
                if seq in rejected:
                    self.settled.rejected[rejected[seq]] += 1
                else:
                    self.settled.stored.append(entry.message)
            self._count -= len(covered)
            if not entries:
                self._by_vin.pop(receipt.vin, None)
        return len(covered)

    def due(self, timeout_s: float) -> list[SimMessage]:
        """Messages sent more than `timeout_s` ago without a receipt: to send again (marked as sent now)."""
        now = time.monotonic()
        out = []
        with self._lock:
            for entries in self._by_vin.values():
                for entry in entries.values():
                    if now - entry.sent_at >= timeout_s:
                        entry.sent_at, entry.attempts = now, entry.attempts + 1
                        out.append(entry.message)
            self.settled.resent += len(out)
        return out

    def everything(self) -> list[SimMessage]:
        """Every message not yet receipted (what a head unit resends after a reconnect), marked as sent now."""
        now = time.monotonic()
        with self._lock:
            entries = [e for by_seq in self._by_vin.values() for e in by_seq.values()]
            for entry in entries:
                entry.sent_at, entry.attempts = now, entry.attempts + 1
            self.settled.resent += len(entries)
        return [e.message for e in entries]

    def wait_empty(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._count == 0
