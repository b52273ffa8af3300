"""A local Mosquitto broker configured as Sentinel ships it (`make stream-demo`, the broker
tests, `benchmarks/stream.py`), and the settings any Mosquitto in front of Sentinel needs.

Why these settings (measured with Mosquitto 2.0.11):

* `max_queued_messages`: Mosquitto's default (1000) *silently drops* QoS 1 messages for a
  consumer that is offline once 1000 are queued, although every publisher got its PUBACK
  (19,000 of 20,000 lost in one try). Sentinel's consumer is offline while it restarts, so
  the queue must hold what devices send meanwhile: `QUEUED_MESSAGES` (a million: about
  70 s of a 10M-device fleet at 15-minute reports; size it to your longest planned outage).
* `max_inflight_messages`: how many messages the broker hands a consumer before it must
  acknowledge (default 20). The consumer acknowledges only what is fsynced, so this is the
  fsync window: 20 would mean an fsync every 20 messages. `INFLIGHT_MESSAGES` (1000) gives
  one fsync per ~1000 messages; batch files are far larger (see `stream.journal`).
* `persistence` + `autosave_interval`: Mosquitto writes its state on a clean exit (SIGTERM)
  and every `autosave_interval` seconds, not per message: a broker killed with SIGKILL loses
  what arrived since its last save although publishers had their acknowledgements. That is
  a limit of Mosquitto, not of Sentinel (a broker that stores each message, e.g. NATS
  JetStream, does not have it).
* no anonymous clients; a password file; TLS when a certificate is given.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO = os.environ.get("SENTINEL_MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = os.environ.get("SENTINEL_MOSQUITTO_PASSWD", "/usr/bin/mosquitto_passwd")
QUEUED_MESSAGES = 1_000_000
INFLIGHT_MESSAGES = 1000
AUTOSAVE_SECONDS = 30


class BrokerUnavailable(RuntimeError):
    """Mosquitto cannot be started here (not installed); callers skip or say so."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class BrokerTLS:
    certfile: Path
    keyfile: Path
    cafile: Path  # what clients must trust (the CA that signed `certfile`)


def config_text(
    root: Path, port: int, tls_port: int | None, tls: BrokerTLS | None, inflight: int
) -> str:
    lines = [
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {root / 'passwd'}",
        "persistence true",
        f"persistence_location {root / 'data'}/",
        f"autosave_interval {AUTOSAVE_SECONDS}",
        f"max_queued_messages {QUEUED_MESSAGES}",
        "max_queued_bytes 0",
        f"max_inflight_messages {inflight}",
        "persistent_client_expiration 7d",
        f"log_dest file {root / 'mosquitto.log'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        f"listener {port} 127.0.0.1",
    ]
    if tls is not None and tls_port is not None:
        lines += [
            f"listener {tls_port} 127.0.0.1",
            f"certfile {tls.certfile}",
            f"keyfile {tls.keyfile}",
            f"cafile {tls.cafile}",
            "tls_version tlsv1.2",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class LocalBroker:
    """A Mosquitto started from `config_text` in `root`, on 127.0.0.1 (user/password auth)."""

    root: Path
    port: int
    username: str
    password: str
    tls: BrokerTLS | None = None
    tls_port: int | None = None
    inflight: int = INFLIGHT_MESSAGES
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def env(self) -> dict[str, str]:
        """The consumer's and publisher's credentials for this broker (`stream.settings`)."""
        env = {"SENTINEL_MQTT_USERNAME": self.username, "SENTINEL_MQTT_PASSWORD": self.password}
        if self.tls is not None:
            env["SENTINEL_MQTT_CA_FILE"] = str(self.tls.cafile)
        return env

    def _account(self) -> tuple[int, int] | None:
        """As root Mosquitto drops to the `mosquitto` user: its files must belong to it."""
        if os.geteuid() != 0:
            return None
        try:
            account = pwd.getpwnam("mosquitto")
        except KeyError:
            return None
        return account.pw_uid, account.pw_gid

    def prepare(self) -> None:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        passwd = self.root / "passwd"
        result = subprocess.run(
            [MOSQUITTO_PASSWD, "-c", "-b", str(passwd), self.username, self.password],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode:
            raise RuntimeError(f"mosquitto_passwd failed: {result.stderr.strip()}")
        (self.root / "mosquitto.conf").write_text(
            config_text(self.root, self.port, self.tls_port, self.tls, self.inflight)
        )
        owner = self._account()
        if owner is not None:
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, *owner)

    def start(self, timeout: float = 20) -> None:
        log = open(self.root / "stdout.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.root / "mosquitto.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        while True:
            try:
                for port in ports:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {self.log_tail()}") from None
                time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: Mosquitto saves its state and exits. SIGKILL: what arrived since the last
        autosave is lost (the documented limit)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        texts = []
        for name in ("stdout.log", "mosquitto.log"):
            with contextlib.suppress(OSError):
                texts += (self.root / name).read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(texts) or "(no log)"


@contextlib.contextmanager
def running_broker(
    root: Path,
    *,
    username: str = "sentinel",
    password: str,
    tls: BrokerTLS | None = None,
    inflight: int = INFLIGHT_MESSAGES,
) -> Iterator[LocalBroker]:
    """Mosquitto on free ports of 127.0.0.1 (a TLS listener too when `tls` is given),
    persistence in `root/data`; stopped (SIGTERM) and `root` removed afterwards."""
    if not (Path(MOSQUITTO).exists() and Path(MOSQUITTO_PASSWD).exists()):
        raise BrokerUnavailable(
            f"{MOSQUITTO} not found: run `make servers` (as root it installs Debian's mosquitto)"
        )
    broker = LocalBroker(
        root,
        free_port(),
        username,
        password,
        tls=tls,
        tls_port=free_port() if tls else None,
        inflight=inflight,
    )
    try:
        broker.prepare()
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)
