"""What every sink is, and how sinks report each request's outcome to whoever counts them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, runtime_checkable

from vehicle_ingest.cdp._change import TagChange

__all__ = ["Sink", "observing_requests", "report_request"]

RequestObserver = Callable[[str, str], None]  # (sink name, status)

# A context variable rather than a constructor argument: sinks are built from
# URLs before the Deliverer (which owns the registry) exists, and the Sink
# contract stays `name` + `send`. One send can make several requests (Segment
# splits batches), so the count cannot be derived from send's outcome.
_observer: ContextVar[RequestObserver | None] = ContextVar("cdp_request_observer", default=None)


@runtime_checkable
class Sink(Protocol):
    """Delivers tag changes to one CDP endpoint.

    `name` is stable and free of secrets: delivery state is keyed by it.
    `send` returns once the endpoint accepted every change, and raises
    `DeliveryError` otherwise (the caller retries the same changes).
    """

    name: str

    async def send(self, changes: Sequence[TagChange]) -> None: ...


def report_request(sink: str, status: str) -> None:
    """Called by sinks once per request: status is the HTTP code, "timeout" or "error"."""
    observer = _observer.get()
    if observer is not None:
        observer(sink, status)


@contextmanager
def observing_requests(observer: RequestObserver) -> Iterator[None]:
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)
