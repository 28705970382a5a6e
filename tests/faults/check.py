"""Store versus truth: every message the head units sent stored exactly once, with the samples and values it carried.

The truth is what the receipt-aware load sent (tests/faults/load.py); without receipts it would be
what the broker PUBACKed, and a broker crash could lose part of it (`blame_broker`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tests.faults.load import Expected
from vehicle_ingest.gateway.demo import GatewayProcess

__all__ = ["Verdict", "compare", "stored_messages"]

# Per (vin, seq): rows and value sum. A message stored twice has twice its rows.
_PER_MESSAGE_SQL = (
    "SELECT vin, seq, count(), sum(value) FROM signals WHERE startsWith(vin, '{prefix}') GROUP BY vin, seq"
)
StoredRow = tuple[str, int, int, float]


@dataclass
class Verdict:
    """The outcome of one scenario, in messages."""

    scenario: str
    acked: int  # messages the store must hold: sent by receipt-aware head units (PUBACKed, without receipts)
    stored: int  # distinct acked identities found in the store(s)
    lost: int  # acked, not stored, and no fault of the broker explains it
    duplicated: int  # stored more than once (in one store, or across stores)
    wrong: int  # stored once but with other samples or values than sent
    unacked_stored: int = 0  # stored although the PUBACK never reached the publisher (allowed)
    broker_unsaved: int = 0  # PUBACKed after the broker's last save before a kill -9
    broker_unrouted: int = 0  # PUBACKed with "no matching subscribers": the broker had lost our session
    unreceipted: int = 0  # still kept by the head units at the end (no receipt came): lost, as they count it
    samples_expected: int = 0
    samples_stored: int = 0
    value_sum_expected: float = 0.0
    value_sum_stored: float = 0.0
    lost_keys: list[tuple[str, int]] = field(default_factory=list, repr=False)  # ours, once blame_broker ran
    lost_acked_at: dict[tuple[str, int], float] = field(default_factory=dict, repr=False)
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def broker_lost(self) -> int:
        """Acked, not stored, lost by the broker itself (both causes); reported apart from `lost`."""
        return self.broker_unsaved + self.broker_unrouted

    @property
    def exact(self) -> bool:
        """Every acked message stored once, as sent: the samples and value checksums over all of them agree."""
        return (
            self.lost == self.broker_lost == self.duplicated == self.wrong == self.unreceipted == 0
            and self.samples_stored == self.samples_expected
            and math.isclose(self.value_sum_stored, self.value_sum_expected, rel_tol=1e-9, abs_tol=1e-6)
        )

    def blame_broker(self, acked: Mapping[tuple[str, int], Expected], windows: list[tuple[float, float]]) -> None:
        """Move the broker's own losses from `lost` to `broker_lost`, counted by cause.

        - unsaved: PUBACKed inside a window (last broker save, restart after a kill -9]: those
          messages existed only in the killed broker's memory.
        - unrouted: PUBACKed with "no matching subscribers": the broker had lost the gateway's
          session (created after its last save) and kept the message for no one.
        Made visible here, not hidden in a total; everything else stays ours.
        """
        unrouted = [k for k in self.lost_keys if not acked[k].routed]
        unsaved = [
            k for k in self.lost_keys if acked[k].routed and any(lo <= acked[k].acked_at <= hi for lo, hi in windows)
        ]
        self.broker_unsaved, self.broker_unrouted = len(unsaved), len(unrouted)
        self.lost -= self.broker_lost
        blamed = set(unrouted) | set(unsaved)
        self.lost_keys = [k for k in self.lost_keys if k not in blamed]

    def head_units(self, unreceipted: int, resent: int) -> Verdict:
        """What the head units counted: messages still without a receipt, and copies they sent again."""
        self.unreceipted = unreceipted
        self.notes["resent_by_head_units"] = resent
        return self

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.notes.items())
        broker = (
            f", broker lost {self.broker_lost} (unsaved {self.broker_unsaved}, unrouted {self.broker_unrouted})"
            if self.broker_lost
            else ""
        )
        samples = f", samples {self.samples_stored}/{self.samples_expected}" if self.samples_expected else ""
        first = ", ".join(f"{v}/{q} acked at {self.lost_acked_at[(v, q)]:.3f}" for v, q in self.lost_keys[:3])
        first_lost = f" (first lost: {first})" if first else ""  # enough to find them in the brokers' logs
        unreceipted = f", unreceipted {self.unreceipted}" if self.unreceipted else ""
        return (
            f"{self.scenario}: sent {self.acked}, stored {self.stored}, lost {self.lost}{broker}{unreceipted}, "
            f"duplicated {self.duplicated}, wrong {self.wrong}{samples}{first_lost}{' ' + extra if extra else ''}"
        )


def stored_messages(gateways: Iterable[GatewayProcess], prefix: str) -> list[StoredRow]:
    """(vin, seq, rows, value sum) per message per store; one store's row per gateway it appears in."""
    rows: list[StoredRow] = []
    for gw in gateways:
        rows += [(v, int(s), int(n), float(x)) for v, s, n, x in gw.sql(_PER_MESSAGE_SQL.format(prefix=prefix))]
    return rows


def compare(scenario: str, acked: Mapping[tuple[str, int], Expected], stored: list[StoredRow]) -> Verdict:
    """Match stored rows (from one or several stores) against the acked truth."""
    copies: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for vin, seq, n, value_sum in stored:
        copies.setdefault((vin, seq), []).append((n, value_sum))
    duplicated = wrong = 0
    for key, found in copies.items():
        want = acked.get(key)
        rows = sum(n for n, _ in found)
        if want is None:
            continue
        if len(found) > 1 or (rows > want.samples and rows % want.samples == 0):
            duplicated += 1
        elif rows != want.samples or not math.isclose(found[0][1], want.value_sum, rel_tol=1e-9, abs_tol=1e-6):
            wrong += 1
    lost_keys = sorted(k for k in acked if k not in copies)
    in_truth = [found for key, found in copies.items() if key in acked]
    return Verdict(
        scenario=scenario,
        acked=len(acked),
        stored=len(in_truth),
        lost=len(lost_keys),
        duplicated=duplicated,
        wrong=wrong,
        unacked_stored=sum(1 for k in copies if k not in acked),
        samples_expected=sum(e.samples for e in acked.values()),
        samples_stored=sum(n for found in in_truth for n, _ in found),
        value_sum_expected=sum(e.value_sum for e in acked.values()),
        value_sum_stored=sum(x for found in in_truth for _, x in found),
        lost_keys=lost_keys,
        lost_acked_at={k: acked[k].acked_at for k in lost_keys},
    )
