"""`sentinel stream-demo` (`make stream-demo`): the streaming path end to end on this
machine. A local Mosquitto (configured as Sentinel ships it), `sentinel consume`, and the
simulator publishing like devices for a minute; the landing sensor and its ingestion runs
driven as the daemon drives them, in the project's Dagster instance (the UI shows them
afterwards). Prints the accounting and when the first events reached `telemetry_events`."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from sentinel_assets import paths
from sentinel_assets.cli.instance import command_instance
from sentinel_assets.cli.orchestrate import prepare_instance_home
from sentinel_assets.stream.broker import BrokerUnavailable, running_broker
from sentinel_assets.stream.health import consumer_status
from sentinel_assets.stream.publisher import paced, publish
from sentinel_assets.stream.settings import broker_address
from sentinel_assets.telemetry import lake
from sentinel_assets.telemetry.simulate import SimulationPlan, published

CONSUMER_ID = "stream-demo"
READINGS_PER_DAY = 4


def _status(landing: Path) -> dict:
    return consumer_status(landing, CONSUMER_ID)


def _landed_all(status: dict, published: int) -> bool:
    """The consumer has every published message durable and no batch left open (its status
    is rewritten every second: the publisher's end alone says nothing about the consumer)."""
    return status.get("messages", 0) >= published and status.get("queued") == 0


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ValueError(f"stream-demo: {what} did not happen within {timeout:g} s")
        time.sleep(0.1)


def _run(args: argparse.Namespace, broker, landing: Path, home: Path, sent) -> tuple:
    """Consumer, paced publisher and sensor ticks until everything published is ingested;
    (seconds until the first events were in telemetry_events, the files ingested)."""
    env = {**os.environ, **broker.env()}
    launched = time.time()
    log = home / "stream-demo-consumer.log"
    with open(log, "w") as output:
        consumer = subprocess.Popen(
            [sys.executable, "-m", "sentinel_assets.cli.main", "consume", "--source",
             broker.url, "--landing", str(landing), "--consumer-id", CONSUMER_ID],
            env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def subscribed() -> bool:
        if consumer.poll() is not None:
            raise ValueError(f"stream-demo: the consumer exited ({consumer.returncode}); see {log}")
        # This consumer's subscription, not an earlier run's status file: a message published
        # before the broker has the session is not kept for it.
        status = _status(landing)
        return bool(status.get("subscribed")) and status.get("started_at", 0) >= launched

    try:
        _wait(subscribed, 60, "the consumer's subscription")
        print(
            f"broker {broker.url} (Mosquitto), consumer {CONSUMER_ID}, publishing "
            f"{len(sent):,} messages at {args.rate:,}/s; landing sensor every {args.tick:g} s"
        )
        address = broker_address(broker.url, broker.env())
        publisher = threading.Thread(
            target=publish, args=(address, paced(sent, args.rate)), daemon=True
        )
        started = time.time()
        publisher.start()
        first_visible: float | None = None
        ingested = []
        with command_instance() as instance:
            from sentinel_assets.cli.landing_ticks import LandingTicks

            ticks = LandingTicks(home, instance)
            deadline = time.monotonic() + args.seconds * 3 + 300
            while time.monotonic() < deadline:
                ticks.wait(args.tick)
                done = [f for f in ticks.tick() if f.name.startswith(CONSUMER_ID)]
                ingested += done
                if done and first_visible is None:
                    first_visible = min(f.finished_at for f in done) - started
                for f in sorted(done, key=lambda f: f.name):
                    print(f"  ingested {f.name} ({'ok' if f.success else 'FAILED'})")
                if (
                    not publisher.is_alive()
                    and _landed_all(_status(landing), len(sent))
                    and not done
                ):
                    break
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(timeout=60)
        return first_visible, ingested
    finally:
        if consumer.poll() is None:
            consumer.kill()


def stream_demo_command(args: argparse.Namespace) -> int:
    # The definitions load here, for the sensor's ticks: imported only by this command.
    from sentinel_assets.cli.landing_ticks import sensor_interval_s

    args.tick = sensor_interval_s() if args.tick is None else args.tick
    home = paths.data_home()
    landing, lake_root = paths.landing_root(home), paths.lake_root(home)
    prepare_instance_home()
    # Readings of the last day (not the file demo's days): new events, not duplicates.
    as_of = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    devices = max(1, round(args.rate * args.seconds / (8 * READINGS_PER_DAY)))
    plan = SimulationPlan(days=1, devices_per_region=devices, as_of=as_of, seed=int(time.time()))
    sent = published(plan)
    root = Path(tempfile.mkdtemp(prefix="sentinel-stream-demo-broker-"))
    try:
        with running_broker(root, password=os.urandom(12).hex()) as broker:
            first_visible, ingested = _run(args, broker, landing, home, sent)
    except BrokerUnavailable as error:  # raised before the broker starts
        raise ValueError(str(error)) from None
    batches = {f.batch for f in ingested}
    manifests = [m for m in lake.read_manifests(lake_root) if m["batch"] in batches]
    accepted = sum(m["accepted"] for m in manifests)
    duplicates = sum(m["duplicates"] for m in manifests)
    dead = sum(m["dead_letters"] for m in manifests)
    unaccounted = len(sent) - accepted - duplicates - dead
    print(
        f"published {len(sent):,}; landed in {len(manifests)} batch(es): {accepted:,} events, "
        f"{duplicates:,} duplicates dropped, {dead:,} dead letters; unaccounted {unaccounted:,}"
    )
    if first_visible is not None:
        print(f"first events in telemetry_events {first_visible:.1f} s after publishing began")
    return 0 if unaccounted == 0 else 1


def add_command(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "stream-demo",
        help="a local broker, the consumer and the simulator publishing for a minute, ingested "
        "through the landing sensor; prints the accounting",
    )
    demo.add_argument("--seconds", type=float, default=60.0, help="how long to publish")
    demo.add_argument("--rate", type=int, default=1000, help="messages per second")
    demo.add_argument(
        "--tick", type=float, help="seconds between sensor ticks (default: the landing sensor's)"
    )
    demo.set_defaults(handler=stream_demo_command)
