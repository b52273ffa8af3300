"""Where the stream comes from and how to reach it: a broker URL plus credentials and TLS
files from the environment (never from the repository), validated with one-sentence errors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

USERNAME_ENV = "SENTINEL_MQTT_USERNAME"
PASSWORD_ENV = "SENTINEL_MQTT_PASSWORD"
CA_FILE_ENV = "SENTINEL_MQTT_CA_FILE"
CERT_FILE_ENV = "SENTINEL_MQTT_CERT_FILE"  # client certificate (brokers that require one)
KEY_FILE_ENV = "SENTINEL_MQTT_KEY_FILE"
SCHEMES = {"mqtt": 1883, "mqtts": 8883}


class StreamConfigError(ValueError):
    """A stream setting is missing or wrong; the message is one sentence."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def _file(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name)
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise StreamConfigError(f"{name} names {value!r}, which is not a file.")
    return path


def broker_address(source: str, env: Mapping[str, str] | None = None) -> BrokerAddress:
    """`mqtt://HOST:PORT` or `mqtts://HOST:PORT`, credentials from the environment."""
    env = os.environ if env is None else env
    parts = urlsplit(source)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise StreamConfigError(
            f"--source must look like mqtt://HOST:PORT or mqtts://HOST:PORT, not {source!r}."
        )
    if parts.username or parts.password:
        raise StreamConfigError(
            f"Put no credentials in the --source URL: set {USERNAME_ENV} and {PASSWORD_ENV}."
        )
    try:
        port = parts.port or SCHEMES[parts.scheme]
    except ValueError:
        raise StreamConfigError(f"The port in {source!r} is not a TCP port number.") from None
    tls = parts.scheme == "mqtts"
    files = {name: _file(env, name) for name in (CA_FILE_ENV, CERT_FILE_ENV, KEY_FILE_ENV)}
    if not tls and any(files.values()):
        raise StreamConfigError(
            f"TLS files are set ({', '.join(n for n, f in files.items() if f)}) but the source "
            f"is plain {source!r}: use mqtts://."
        )
    if bool(files[CERT_FILE_ENV]) != bool(files[KEY_FILE_ENV]):
        raise StreamConfigError(f"Set both {CERT_FILE_ENV} and {KEY_FILE_ENV}, or neither.")
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=env.get(USERNAME_ENV) or None,
        password=env.get(PASSWORD_ENV) or None,
        ca_file=files[CA_FILE_ENV],
        cert_file=files[CERT_FILE_ENV],
        key_file=files[KEY_FILE_ENV],
    )


SILENCE_ENV = "SENTINEL_STREAM_SILENCE_MINUTES"
DEFAULT_SILENCE_MINUTES = 15.0


def silence_seconds(env: Mapping[str, str] | None = None) -> float:
    """How long a region may send nothing before its freshness check fails."""
    env = os.environ if env is None else env
    raw = (env.get(SILENCE_ENV) or "").strip() or str(DEFAULT_SILENCE_MINUTES)
    try:
        minutes = float(raw)
    except ValueError:
        minutes = float("nan")
    if not minutes > 0 or minutes == float("inf"):
        raise StreamConfigError(f"{SILENCE_ENV} must be a number of minutes above 0, got {raw!r}.")
    return minutes * 60
