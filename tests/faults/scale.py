"""How hard each scenario pushes: small in `make test`, the full matrix in `make faults`."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.faults.check import Verdict

__all__ = ["VERDICTS", "VERDICT_LINE", "Scale"]

VERDICTS = pytest.StashKey[list[Verdict]]()
VERDICT_LINE = "fault_verdict"  # user_properties key of a scenario's summary line


@dataclass(frozen=True)
class Scale:
    name: str
    kills: int  # kill -9 of the gateway in a row
    rate: float  # load, messages/s
    broker_load_s: float  # load before and after each broker kill
    store_outage_s: float  # store unwritable for this long, under load
    cdp_outage_s: float  # CDP refusing for this long (spans gateway restarts)
    shared_load_s: float  # load on the two shared-subscription gateways
    gateway_down_s: float  # gateway stopped while the vehicles keep publishing
    vehicle_offline_s: float  # vehicles off the broker, producing into their buffers
    receipt_timeout_s: float  # head units resend what no receipt covered after this (the spec says 60 s)

    @classmethod
    def fast(cls) -> Scale:
        return cls(
            "fast",
            kills=3,
            rate=300,
            broker_load_s=1.0,
            store_outage_s=3,
            cdp_outage_s=3,
            shared_load_s=3,
            gateway_down_s=4,
            vehicle_offline_s=4,
            receipt_timeout_s=5,
        )

    @classmethod
    def full(cls) -> Scale:
        return cls(
            "full",
            kills=20,
            rate=500,
            broker_load_s=4,
            store_outage_s=40,
            cdp_outage_s=75,
            shared_load_s=15,
            gateway_down_s=60,
            vehicle_offline_s=60,
            receipt_timeout_s=60,
        )
