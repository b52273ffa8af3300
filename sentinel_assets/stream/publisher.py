"""Publish telemetry like devices do: QoS 1, with a bounded number of messages in flight
(paho's message ids wrap at 65,535 and an unbounded `publish()` loop ends in
`MQTT_ERR_QUEUE_SIZE`, messages never sent)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sentinel_assets.stream.settings import BrokerAddress


class PublishError(RuntimeError):
    """The broker refused or dropped the publisher; one sentence."""


def publish(
    address: BrokerAddress,
    messages: Iterable[tuple[str, bytes]],
    *,
    client_id: str = "sentinel-simulator",
    max_inflight: int = 200,
    timeout_s: float = 30.0,
) -> int:
    """Publish every (topic, payload) at QoS 1 and wait for each PUBACK; returns the count."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(max_inflight)
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set(ca_certs=str(address.ca_file) if address.ca_file else None)
    refused: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))

    client.on_connect = on_connect
    try:
        client.connect(address.host, address.port, keepalive=30)
    except OSError as error:
        raise PublishError(f"Cannot reach the broker at {address.url}: {error}.") from None
    client.loop_start()
    sent = 0
    window: deque[mqtt.MQTTMessageInfo] = deque()
    try:
        for topic, payload in messages:
            if refused:
                raise PublishError(f"The broker at {address.url} refused: {refused[0]}.")
            while len(window) >= max_inflight:
                window.popleft().wait_for_publish(timeout_s)
            info = client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
                raise PublishError(f"Publishing to {address.url} failed: {info.rc}.")
            window.append(info)
            sent += 1
        while window:
            info = window.popleft()
            info.wait_for_publish(timeout_s)
            if not info.is_published():
                raise PublishError(f"The broker at {address.url} did not acknowledge a message.")
        if refused:
            raise PublishError(f"The broker at {address.url} refused: {refused[0]}.")
    finally:
        client.disconnect()
        client.loop_stop()
    return sent


def paced(
    messages: Iterable[tuple[str, bytes]],
    rate: float,
    published_at: dict[bytes, float] | None = None,
) -> Iterator[tuple[str, bytes]]:
    """`messages` at a steady `rate` per second (a fleet reporting), noting when each payload
    was first handed to the publisher in `published_at` (epoch seconds)."""
    started = time.monotonic()
    for i, (topic, payload) in enumerate(messages):
        while (wait := started + i / rate - time.monotonic()) > 0:
            time.sleep(wait)
        if published_at is not None:
            published_at.setdefault(payload, time.time())
        yield topic, payload
