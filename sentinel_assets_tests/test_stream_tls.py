"""The consumer over TLS against a real Mosquitto with a password file and a TLS listener
whose certificate is signed by a throwaway CA made here: the right credentials and CA
connect; wrong credentials and an untrusted certificate each end in one sentence; an
anonymous client is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sentinel_assets.stream.broker import BrokerTLS, BrokerUnavailable, running_broker
from sentinel_assets.stream.publisher import publish
from sentinel_assets.stream.settings import broker_address
from sentinel_assets_tests.stream_helpers import (
    PASSWORD,
    account,
    device_messages,
    landed_envelopes,
    stop,
    subscribed,
    wait_until,
)

pytestmark = pytest.mark.slow


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            f"/CN={name}", "-keyout", str(key), "-out", str(cert))  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def certificates():
    """A CA, a server certificate for 127.0.0.1 it signed, and a second CA that signed
    nothing (readable by the `mosquitto` user Mosquitto drops to)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found: the TLS tests make their own CA with it")
    folder = Path(tempfile.mkdtemp(prefix="sentinel-tls-"))
    os.chmod(folder, 0o755)
    ca_key, ca_cert = make_ca(folder, "sentinel-test-ca")
    _, other_ca = make_ca(folder, "some-other-ca")
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.crt"
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "1", "-out", str(cert),
            "-extfile", str(folder / "san.ext"))  # fmt: skip
    for path in folder.iterdir():
        os.chmod(path, 0o644)
    yield BrokerTLS(certfile=cert, keyfile=key, cafile=ca_cert), other_ca
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def broker(certificates):
    """Overrides the plain broker: the same, plus a TLS listener."""
    root = Path(tempfile.mkdtemp(prefix="sentinel-broker-"))
    try:
        with running_broker(root, password=PASSWORD, tls=certificates[0]) as running:
            yield running
    except BrokerUnavailable as error:
        pytest.skip(str(error))


def test_the_right_credentials_and_ca_connect_over_tls(broker, consumer, tmp_path):
    landing = tmp_path / "landing"
    proc = consumer(landing, url=broker.tls_url)
    wait_until(lambda: subscribed(landing), timeout=60)
    sent = device_messages(devices=10)
    assert publish(broker_address(broker.tls_url, broker.env()), sent) == len(sent)
    wait_until(lambda: account_ready(landing, len(sent)), timeout=120)
    out = stop(proc)
    assert f"connected to {broker.tls_url}" in out
    found = account(tmp_path, landing, tmp_path / "lake", sent)
    assert found.holds and found.consumed == len(sent)


def account_ready(landing: Path, count: int) -> bool:
    return len(landed_envelopes(landing)) >= count


def one_sentence(proc) -> str:
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out, out
    return lines[0]


def test_wrong_credentials_over_tls_end_in_one_sentence(broker, consumer, tmp_path):
    proc = consumer(tmp_path / "landing", url=broker.tls_url, password="not-the-password")
    line = one_sentence(proc)
    assert "refused the connection" in line and "SENTINEL_MQTT_PASSWORD" in line


@pytest.mark.parametrize("trust", ["another CA", "the system's CAs"])
def test_an_untrusted_certificate_ends_in_one_sentence(
    broker, consumer, certificates, tmp_path, trust
):
    env = {"SENTINEL_MQTT_CA_FILE": str(certificates[1]) if trust == "another CA" else ""}
    proc = consumer(tmp_path / "landing", url=broker.tls_url, env=env)
    line = one_sentence(proc)
    assert "is not trusted" in line and "SENTINEL_MQTT_CA_FILE" in line


@pytest.mark.parametrize("listener", ["plain", "tls"])
def test_an_anonymous_client_is_refused(broker, certificates, listener):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    port = broker.port
    if listener == "tls":
        client.tls_set(ca_certs=str(certificates[0].cafile))
        port = broker.tls_port
    answered = threading.Event()
    codes = []

    def on_connect(client, userdata, flags, reason_code, properties):
        codes.append(reason_code)
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert answered.wait(20), "the broker never answered the CONNECT"
    finally:
        client.loop_stop()
    assert codes[0].is_failure and "authorized" in str(codes[0]).lower()
