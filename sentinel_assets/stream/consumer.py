"""`sentinel consume`: the long-running MQTT consumer (outside Dagster's runs, like the
"Observing streaming processes" guide's consumer), turning messages into landing batches.

* Subscribes to `fleet/+/+/telemetry` (or `$share/<group>/fleet/+/+/telemetry` so several
  consumers share the load) at QoS 1 with a persistent session (`clean_start=False` and a
  session expiry), so messages published while it is down wait for it at the broker.
* `manual_ack=True`: a message is acknowledged only once its envelope is fsynced in the
  journal (`stream.journal`). The broker hands out at most `receive_maximum` unacknowledged
  messages (and Mosquitto at most its `max_inflight_messages`), so messages are flushed in
  groups of up to that many (or every `flush_interval_s`): one fsync per group, not per
  message, and batch files far larger than the in-flight window.
* A journal becomes a landing batch (`*.mqtt.jsonl`, one atomic rename) when it holds
  `batch_messages` messages or is `batch_age_s` old; the landing sensor ingests it like any
  file (one validation path, one dead-letter table, one dedupe).
* Wrong credentials, a refused client or an untrusted certificate end the consumer with one
  sentence (no reconnect loop that never says why); a broker that goes away is reconnected
  with backoff, each attempt logged. SIGTERM/SIGINT: flush, acknowledge, land, disconnect.
"""

from __future__ import annotations

import json
import logging
import signal
import ssl
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sentinel_assets.stream.health import STATUS_FILE, ConsumerStatus
from sentinel_assets.stream.journal import Journal, LandingNotWritable
from sentinel_assets.stream.settings import BrokerAddress
from sentinel_assets.telemetry.envelope import TOPIC_FILTER, envelope

log = logging.getLogger("sentinel.consume")
SESSION_EXPIRY_S = 7 * 24 * 3600
STATUS_INTERVAL_S = 1.0  # how often status.json is rewritten (health.CONSUMER_STALE_S reads it)


RECEIVE_BLOCK = 256 * 1024
_U16 = struct.Struct("!H")
_PUBACK = struct.Struct("!BBH")


class _BlockClient(mqtt.Client):
    """paho's client with a receive buffer and corked acknowledgements (the hot path).

    paho reads a packet with three or more `recv` calls (command byte, each length byte,
    body) and sends each PUBACK as its own `send`, and `loop()` handles one packet per
    `select`: per message that is about six system calls, most of the consumer's time.
    Here the socket is read in `RECEIVE_BLOCK` blocks, the buffered packets are handled
    without a `select` each (`drain`), and the acknowledgements of a flushed group go out in
    one write (`acknowledge`). A QoS 0/1 PUBLISH goes straight to `on_delivery(topic,
    payload, mid, qos)`: paho's general path builds an `MQTTMessage` and a `Properties`
    object per message (MQTT 5), the largest single cost in a profile; Sentinel reads
    neither the properties nor the flags. Measured in `benchmarks/stream.py`.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._received = b""
        self._received_at = 0
        self.on_delivery: Callable[[str, bytes, int, int], None] | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        command, packet = self._in_packet["command"], self._in_packet["packet"]
        qos = (command & 0x06) >> 1
        if self.on_delivery is None or qos > 1:
            return super()._handle_publish()
        (length,) = _U16.unpack_from(packet)
        topic, at = packet[2 : 2 + length], 2 + length
        mid = 0
        if qos:
            (mid,) = _U16.unpack_from(packet, at)
            at += 2
        if self._protocol == mqtt.MQTTv5:  # skip the properties (a variable byte integer)
            size, shift = 0, 0
            while True:
                byte = packet[at]
                at += 1
                size |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            at += size
        self.on_delivery(topic.decode("utf-8", "replace"), bytes(packet[at:]), mid, qos)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._received_at >= len(self._received):
            block = super()._sock_recv(max(bufsize, RECEIVE_BLOCK))
            if len(block) <= bufsize:
                return block
            self._received, self._received_at = block, 0
        start = self._received_at
        self._received_at = min(start + bufsize, len(self._received))
        return self._received[start : self._received_at]

    def buffered(self) -> int:
        return len(self._received) - self._received_at

    def drain(self, budget: int) -> MQTTErrorCode:
        """Handle up to `budget` packets already received (no `select` per packet). The
        budget, not the broker, bounds what the consumer holds: Mosquitto 2.0 hands a
        reconnecting session its whole offline queue regardless of the receive maximum."""
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while budget > 0 and self.buffered() and rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = self.loop_read()
            budget -= 1
        return rc

    def acknowledge(self, deliveries: list[tuple[int, int]]) -> MQTTErrorCode:
        """PUBACK every (mid, qos) with qos 1, queued as one write behind paho's own packets."""
        packet = b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid, qos in deliveries if qos)
        if not packet:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._packet_queue(PUBACK, packet, 0, 0)


class ConsumerError(RuntimeError):
    """The consumer cannot go on (credentials, certificate, refused); one sentence."""


@dataclass(frozen=True)
class ConsumerSettings:
    landing: Path
    consumer_id: str = "sentinel-consumer"
    share_group: str | None = None
    receive_maximum: int = 1000
    flush_interval_s: float = 0.2
    batch_messages: int = 50_000
    batch_age_s: float = 5.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, for a Prometheus beside it
    max_backoff_s: float = 30.0
    protocol: str = "5"  # or "3.1.1"

    @property
    def topic(self) -> str:
        return f"$share/{self.share_group}/{TOPIC_FILTER}" if self.share_group else TOPIC_FILTER


@dataclass
class ConsumerStats:
    messages: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    last_message_at: dict[str, float] = field(default_factory=dict)  # region -> epoch s
    per_region: Counter = field(default_factory=Counter)


def _is_credentials_refusal(reason: object) -> bool:
    text = str(reason).lower()
    return "user name or password" in text or "not authorized" in text


def _reason_sentence(address: BrokerAddress, reason: object) -> str:
    text = str(reason)
    if _is_credentials_refusal(reason):
        hint = "check SENTINEL_MQTT_USERNAME and SENTINEL_MQTT_PASSWORD"
    else:
        hint = "check the broker's access rules for this client"
    return f"The broker at {address.url} refused the connection ({text}): {hint}."


class Consumer:
    """One consumer process; `run()` returns when stopped (signal or `stop()`)."""

    def __init__(self, address: BrokerAddress, settings: ConsumerSettings) -> None:
        self.address, self.settings = address, settings
        self.journal = Journal(
            settings.landing,
            settings.consumer_id,
            max_messages=settings.batch_messages,
            max_age_s=settings.batch_age_s,
        )
        self.stats = ConsumerStats()
        self.pending: list[tuple[int, int, bytes]] = []  # (mid, qos, envelope line)
        self.pending_since = 0.0
        self.fatal: str | None = None
        self.connected = False
        # The broker confirmed the subscription: from now on nothing published is missed,
        # even on a new session (said in status.json, for a publisher or a test to wait on).
        self.subscribed = False
        self.stopping = False
        self.blocked_since: float | None = None
        self.status_written = 0.0
        self.metrics = _Metrics(settings.metrics_port, settings.metrics_host)
        # An fsync (and acknowledgement) per this many messages: half the in-flight window.
        self.flush_at = max(1, settings.receive_maximum // 2)
        self.client = self._client()

    def _client(self) -> _BlockClient:
        v5 = self.settings.protocol == "5"
        client = _BlockClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.settings.consumer_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if self.address.username:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set(
                ca_certs=str(self.address.ca_file) if self.address.ca_file else None,
                certfile=str(self.address.cert_file) if self.address.cert_file else None,
                keyfile=str(self.address.key_file) if self.address.key_file else None,
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_delivery = self._on_delivery
        client.on_subscribe = self._on_subscribe
        return client

    # --- paho callbacks (run inside client.loop, in this thread) ------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.fatal = _reason_sentence(self.address, reason_code)
            return
        self.connected = True
        log.info(
            "connected to %s as %s (session %s), subscribing to %s",
            self.address.url,
            self.settings.consumer_id,
            "resumed" if flags.session_present else "new",
            self.settings.topic,
        )
        client.subscribe(self.settings.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            self.fatal = (
                f"The broker at {self.address.url} refused the subscription to "
                f"{self.settings.topic} ({refused[0]}): check the user's ACL."
            )
            return
        self.subscribed = True
        log.info("subscribed to %s", self.settings.topic)
        self._write_status()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected = False
        self.subscribed = False
        refused = reason_code.is_failure and _is_credentials_refusal(reason_code)
        if refused and self.fatal is None:
            self.fatal = _reason_sentence(self.address, reason_code)

    def _on_message(self, client, userdata, message) -> None:
        self._on_delivery(message.topic, message.payload, message.mid, message.qos)

    def _on_delivery(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        if not self.pending:
            self.pending_since = time.monotonic()
        now = time.time()
        self.pending.append((mid, qos, envelope(topic, payload, int(now * 1e6))))
        region = topic.split("/", 2)[1] if topic.count("/") >= 2 else "?"
        self.stats.last_message_at[region] = now
        self.stats.per_region[region] += 1

    # --- the loop ------------------------------------------------------------------------

    def _connect(self) -> None:
        properties = None
        if self.settings.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            properties.ReceiveMaximum = self.settings.receive_maximum
            self.client.connect(
                self.address.host,
                self.address.port,
                keepalive=30,
                clean_start=False,
                properties=properties,
            )
        else:
            self.client.connect(self.address.host, self.address.port, keepalive=30)

    def _connect_with_backoff(self, attempt: Callable[[], object] | None = None) -> None:
        """Connect (or `attempt` a reconnect) until it works; a TLS failure is final."""
        delay = 0.5
        while not self.stopping:
            try:
                (attempt or self._connect)()
                return
            except ssl.SSLCertVerificationError as error:
                raise ConsumerError(
                    f"The certificate of {self.address.url} is not trusted "
                    f"({error.verify_message}): set SENTINEL_MQTT_CA_FILE to the CA that "
                    "signed it."
                ) from None
            except ssl.SSLError as error:
                raise ConsumerError(
                    f"TLS with {self.address.url} failed ({error.reason or error}): is it an "
                    "mqtts:// listener, and are the certificate files right?"
                ) from None
            except OSError as error:
                log.warning(
                    "broker %s not reachable (%s); retrying in %.1f s",
                    self.address.url,
                    error.strerror or error,
                    delay,
                )
                self._sleep(delay)
                delay = min(delay * 2, self.settings.max_backoff_s)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))

    def _flush(self) -> bool:
        """Make the pending messages durable, then acknowledge them; False if the landing
        folder refused (they stay unacknowledged: the broker keeps them)."""
        if not self.pending:
            return True
        try:
            self.journal.append([line for _, _, line in self.pending])
        except LandingNotWritable as error:
            if self.blocked_since is None:
                log.error(
                    "landing folder not writable (%s): holding %d messages unacknowledged "
                    "(the broker keeps them) until it is",
                    error,
                    len(self.pending),
                )
                self.blocked_since = time.monotonic()
            return False
        if self.blocked_since is not None:
            log.info(
                "landing folder writable again after %.0f s", time.monotonic() - self.blocked_since
            )
            self.blocked_since = None
        self.client.acknowledge([(mid, qos) for mid, qos, _ in self.pending])
        self.stats.messages += len(self.pending)
        self.metrics.messages(len(self.pending))
        self.pending.clear()
        return True

    def _land(self, force: bool = False) -> None:
        if not (force or self.journal.due()):
            return
        started = time.monotonic()
        count = self.journal.messages
        try:
            batch = self.journal.rotate()
        except LandingNotWritable as error:
            log.error("cannot land the journal (%s); will retry", error)
            return
        if batch is None:
            return
        self.stats.batches += 1
        self.metrics.batch(self.stats)
        self._write_status()
        log.info(
            "batch %s: %d messages, %.1f KiB, %.3f s",
            batch.name,
            count,
            batch.stat().st_size / 1024,
            time.monotonic() - started,
        )

    def _write_status(self) -> None:
        """The consumer's figures for Dagster (`stream_status.json` beside the journal)."""
        elapsed = max(time.monotonic() - self.stats.started, 1e-9)
        self.status_written = time.monotonic()
        status = {
            "consumer": self.settings.consumer_id,
            "started_at": self.stats.started_at,
            "subscribed": self.subscribed,
            "queued": self.journal.messages + len(self.pending),
            "messages": self.stats.messages,
            "batches": self.stats.batches,
            "messages_per_second": round(self.stats.messages / elapsed, 1),
            "last_message_at": self.stats.last_message_at,
            "messages_by_region": dict(self.stats.per_region),
            "written_at": time.time(),
        }
        self.metrics.status(status["queued"], self.connected)
        path = self.journal.folder / STATUS_FILE
        tmp = path.with_name(".status.json.tmp")
        try:
            tmp.write_text(json.dumps(status, indent=1, sort_keys=True))
            tmp.replace(path)
        except OSError:
            pass

    def _resume_status(self) -> None:
        """Keep the last message time per region across restarts (a silent region stays
        silent when its consumer is restarted)."""
        try:
            previous = ConsumerStatus.from_json(
                json.loads((self.journal.folder / STATUS_FILE).read_text())
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return
        self.stats.last_message_at.update(previous.last_message_at)
        self.stats.per_region.update(previous.messages_by_region)

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self, max_seconds: float | None = None) -> ConsumerStats:
        for batch in self.journal.recover():
            log.info("landed %s, left durable by an earlier consumer", batch.name)
        self._resume_status()
        self._write_status()
        started = time.monotonic()
        self._connect_with_backoff()
        retry_at = 0.0
        while not self.stopping and self.fatal is None:
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                break
            rc = self.client.loop(timeout=0.05)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                rc = self.client.drain(self.flush_at - len(self.pending))
            if self.fatal is not None:
                break
            if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS,) and not self.stopping:
                self.connected = False
                log.warning("connection to %s lost (%s); reconnecting", self.address.url, rc)
                self._reconnect()
                continue
            now = time.monotonic()
            full = len(self.pending) >= self.flush_at
            old = self.pending and now - self.pending_since >= self.settings.flush_interval_s
            if (full or old) and now >= retry_at and not self._flush():
                retry_at = now + 1.0
            if self.blocked_since is None:
                self._land()
            if now - self.status_written >= STATUS_INTERVAL_S:
                self._write_status()
        if self.fatal is not None:
            self.client.disconnect()
            raise ConsumerError(self.fatal)
        # A clean end: what is received becomes durable, acknowledged and landed.
        if self._flush() and self.connected:
            for _ in range(5):  # let the acknowledgements go out
                self.client.loop(timeout=0.05)
        self._land(force=True)
        self.client.disconnect()
        return self.stats

    def _reconnect(self) -> None:
        self._connect_with_backoff(self.client.reconnect)


class _Metrics:
    """Prometheus metrics on <host>:<port> when a port is configured."""

    def __init__(self, port: int | None, host: str = "127.0.0.1") -> None:
        self.enabled = port is not None
        if not self.enabled:
            return
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        registry = CollectorRegistry()
        self._messages = Counter(
            "sentinel_stream_messages", "Messages made durable and acknowledged", registry=registry
        )
        self._batches = Counter("sentinel_stream_batches", "Batches landed", registry=registry)
        self._queued = Gauge(
            "sentinel_stream_queued_messages",
            "Messages received but not yet landed as a batch",
            registry=registry,
        )
        self._connected = Gauge(
            "sentinel_stream_connected", "1 while connected to the broker", registry=registry
        )
        self._last = Gauge(
            "sentinel_stream_last_message_timestamp_seconds",
            "When the last message of a region arrived",
            ["region"],
            registry=registry,
        )
        try:
            start_http_server(port, addr=host, registry=registry)
        except OSError as error:
            raise ConsumerError(
                f"Cannot serve metrics on {host}:{port} ({error.strerror or error}): "
                "choose another --metrics-port."
            ) from None

    def messages(self, count: int) -> None:
        if self.enabled:
            self._messages.inc(count)

    def status(self, queued: int, connected: bool) -> None:
        if self.enabled:
            self._queued.set(queued)
            self._connected.set(1 if connected else 0)

    def batch(self, stats: ConsumerStats) -> None:
        if self.enabled:
            self._batches.inc()
            for region, at in stats.last_message_at.items():
                self._last.labels(region=region).set(at)


def install_signal_handlers(consumer: Consumer) -> None:
    signal.signal(signal.SIGTERM, consumer.stop)
    signal.signal(signal.SIGINT, consumer.stop)
