"""The one way tests start brokers and gateways: a `Rig` owns them and stops what is left at teardown.

Tests take the `rig` fixture (tests/conftest.py); a module-scoped fixture opens
its own with `with Rig(tmp_path_factory.mktemp(...)) as rig:`.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

import pytest

from vehicle_ingest.gateway.broker import Mosquitto, free_port, mosquitto_path
from vehicle_ingest.gateway.demo import GatewayProcess

__all__ = ["Rig"]


class Rig:
    """Owns every broker and gateway process a test starts, so a failing test leaves none behind.

    A gateway named `name` logs to `workdir/<name>.log` and, unless given a
    store, keeps an embedded one in `workdir/store` (name "gateway") or
    `workdir/<name>-store`: starting one again with the same name restarts it
    on the same store and log.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.brokers: list[Mosquitto] = []
        self.gateways: list[GatewayProcess] = []

    def broker(
        self, persistence: bool = False, autosave_interval_s: int = 1800, extra_config: tuple[str, ...] = ()
    ) -> Mosquitto:
        """A started mosquitto on a free port, in `workdir/broker<n>`."""
        if mosquitto_path() is None:
            pytest.fail("mosquitto is not installed: `make test` installs it (apt-get install mosquitto)")
        broker = Mosquitto(self.workdir / f"broker{len(self.brokers)}", free_port(), persistence)
        broker.autosave_interval_s = autosave_interval_s
        broker.extra_config = extra_config
        self.brokers.append(broker)
        broker.start()
        return broker

    def gateway(
        self,
        mqtt_url: str,
        *flags: str,
        name: str = "gateway",
        client_id: str | None = None,
        store: Path | str | None = None,
        ready: bool = True,
    ) -> GatewayProcess:
        """`vehicle-ingest gateway` with `flags`; a Path store is embedded (chdb), a str is a DSN as is.

        `ready=False` returns at once: for a gateway that is expected to exit, or not to become ready.
        """
        if store is None:
            store = self.workdir / ("store" if name == "gateway" else f"{name}-store")
        dsn = f"chdb://{store}" if isinstance(store, Path) else store
        client = ("--client-id", client_id) if client_id is not None else ()
        gw = GatewayProcess(mqtt_url, dsn, free_port(), self.workdir / f"{name}.log", *client, *flags)
        self.gateways.append(gw)
        if ready:
            gw.wait_ready()
        return gw

    def close(self) -> None:
        """Kill the gateways still running (a test stops the ones whose exit it checks), then stop the brokers."""
        for gw in self.gateways:
            if gw.process.poll() is None:
                gw.kill()
        for broker in self.brokers:
            broker.stop()

    def __enter__(self) -> Rig:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
