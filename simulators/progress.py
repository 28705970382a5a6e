"""A status line a second for the publishing commands (simulate, load): what was sent, acked, at what rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """One status line a second: what was sent, what the broker acked, at what rate."""

    def __init__(self, out: TextIO | None, acked: Callable[[], tuple[int, int]]) -> None:
        self.out, self.acked = out, acked
        self.started = self.last = time.monotonic()
        self.sent = 0

    def tick(self, sent: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.out is None or (now - self.last < 1.0 and not force):
            return
        self.last = now
        messages, samples = self.acked()
        elapsed = max(now - self.started, 1e-9)
        end = "\r" if self.out.isatty() and not force else "\n"
        self.out.write(
            f"{elapsed:6.1f}s sent {sent:>10,} acked {messages:>10,} in flight {sent - messages:>6,}"
            f"  {messages / elapsed:>9,.0f} msg/s  {samples / elapsed:>12,.0f} samples/s{end}"
        )
        self.out.flush()
