"""The store-vs-truth checker itself: it must see every kind of error the scenarios rely on it to see."""

from __future__ import annotations

from tests.faults.check import compare
from tests.faults.load import Expected, fault_vin

A, B = fault_vin("CHK", 1), fault_vin("CHK", 2)
ACKED = {(A, 1): Expected(10, 5.0, 100.0), (A, 2): Expected(10, 6.0, 200.0), (B, 1): Expected(4, 1.5, 300.0)}


def test_exact_store_passes():
    verdict = compare("exact", ACKED, [(A, 1, 10, 5.0), (A, 2, 10, 6.0), (B, 1, 4, 1.5)])
    assert verdict.exact and (verdict.lost, verdict.duplicated, verdict.wrong) == (0, 0, 0)


def test_loss_duplicates_and_wrong_content_are_counted():
    stored = [(A, 1, 20, 10.0), (A, 2, 9, 6.0), (fault_vin("CHK", 9), 1, 3, 1.0)]  # A1 twice, A2 short, B1 lost
    verdict = compare("broken", ACKED, stored)
    assert (verdict.lost, verdict.duplicated, verdict.wrong, verdict.unacked_stored) == (1, 1, 1, 1)
    assert not verdict.exact


def test_a_message_in_two_stores_is_a_duplicate():
    verdict = compare("union", ACKED, [(A, 1, 10, 5.0), (A, 1, 10, 5.0), (A, 2, 10, 6.0), (B, 1, 4, 1.5)])
    assert verdict.duplicated == 1 and not verdict.exact


def test_broker_loss_is_only_what_was_acked_inside_a_kill_window():
    verdict = compare("broker", ACKED, [(A, 2, 10, 6.0)])  # A1 (acked at 100) and B1 (at 300) lost
    verdict.blame_broker(ACKED, [(90.0, 150.0)])
    assert (verdict.broker_lost, verdict.lost) == (1, 1)  # B1 is not explained by the kill
    assert not verdict.exact


def test_a_message_the_broker_routed_to_no_one_is_broker_loss_not_ours():
    acked = {**ACKED, (B, 1): Expected(4, 1.5, 300.0, routed=False)}  # PUBACK "no matching subscribers"
    verdict = compare("unrouted", acked, [(A, 2, 10, 6.0)])  # A1 (acked at 100, routed) and B1 lost
    verdict.blame_broker(acked, [])
    assert (verdict.broker_lost, verdict.lost) == (1, 1)  # A1 stays ours: no window, and it was routed
    assert (verdict.broker_unrouted, verdict.broker_unsaved) == (1, 0)
