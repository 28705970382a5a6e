"""The gateway's second MQTT connection: it publishes receipts and nothing else.

Why not the ingest connection: that connection's network thread is held while the
broker sends beyond our Receive Maximum (`MqttSource._wait_for_room`), and paho reads
as many packets per loop as it has messages in flight before it writes. Receipts
published there went out in steps of 1,000 every ~8 s at 1 M samples/s, so head units
timed out and resent every message (benchmarks/README.md). On its own connection a
receipt waits only for the broker.
"""

from __future__ import annotations

import contextlib
import logging

import paho.mqtt.client as mqtt

from vehicle_ingest.gateway.mqtt_source import MqttSettings

__all__ = ["ReceiptSender", "receipt_client_id"]

log = logging.getLogger(__name__)

_MAX_INFLIGHT = 1000


def receipt_client_id(client_id: str) -> str:
    """The receipt connection's client id: the ingest connection's, suffixed (two gateways never share one)."""
    return f"{client_id}-receipts"


class ReceiptSender:
    """QoS 1, not retained, clean session: a receipt is idempotent, so a lost one costs a resend, never data."""

    def __init__(self, settings: MqttSettings) -> None:
        self._settings = settings
        self._last: mqtt.MQTTMessageInfo | None = None
        self._connected = False
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=receipt_client_id(settings.client_id), protocol=mqtt.MQTTv5
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(_MAX_INFLIGHT)
        client.max_queued_messages_set(settings.max_queued_publishes)
        self._client = client

    def start(self) -> None:
        host, port = self._settings.endpoint(self._client)
        self._client.connect_async(host, port, self._settings.keepalive_s, clean_start=True)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes) -> bool:
        """False when paho's queue is full (dropped: the head unit resends). Disconnected, paho keeps it queued."""
        info = self._client.publish(topic, payload, qos=1)
        self._last = info
        return info.rc != mqtt.MQTT_ERR_QUEUE_SIZE

    def flush(self, timeout_s: float) -> None:
        """Wait (bounded) until the broker took the last receipt: the final batches' receipts are not lost
        to our own disconnect, which would make their head units resend them."""
        if self._last is not None and self._connected:
            with contextlib.suppress(RuntimeError, ValueError):  # not sent before a disconnect: resent later
                self._last.wait_for_publish(timeout_s)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._connected = False

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        if getattr(rc, "is_failure", False):
            log.error("mqtt broker %s refused the receipt connection: %s", self._settings.url, rc)
            return
        self._connected = True

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        if self._connected:
            log.warning("receipt connection lost (%s): receipts wait in a queue until it is back", rc)
        self._connected = False
