"""The MQTT consumer against `mosquitto_sub`, and publish-to-`telemetry_events` latency
(issue 18), on a local Mosquitto configured as Sentinel ships it (`stream.broker`).

* throughput - N small messages (the simulator's payloads, ~200 bytes) queued at the broker
  for two persistent sessions, then drained by each subscriber in turn: the baseline
  `mosquitto_sub -c -q 1 -t 'fleet/+/+/telemetry' -C N > file`, and `sentinel consume`
  (MQTT 5, fsynced journal, acknowledgement after the fsync, renamed batch files). Wall time
  from launching the command until all N are in files (the consumer's start-up included);
  its RSS is sampled through the drain, to show it flat. Target: at least a quarter of the
  baseline's rate.
* latency - devices publish at a steady rate (5,000 messages/s by default) for a while; the
  landing sensor ticks at its own `minimum_interval_seconds` and the ingestion runs it asks
  for execute as the daemon would run them; for each accepted event, the time from its
  publication to the end of the run that put it in `telemetry_events`. Reports p50 and p95.

    python -m benchmarks.stream                               # 1m messages, 60 s at 5k/s
    python -m benchmarks.stream --messages 200k --latency-seconds 0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.measure import parse_size, size_label, targets_table
from benchmarks.procmem import _rss_bytes, machine

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "stream_results.json"
TARGETS = {"consumer_vs_mosquitto_sub": 0.25}
PASSWORD = "bench-secret"
PUBLISHERS = 8
NO_TELEMETRY = {"telemetry": {"enabled": False}}
PER_PUBLISHER = 25_000  # mosquitto_pub -l disconnects ("out of memory") far above this


def payloads(count: int) -> list[bytes]:
    """`count` realistic payloads (V1 and V2 agents, some malformed), one line each."""
    from sentinel_assets.telemetry.simulate import SimulationPlan, messages

    devices = max(1, count // (8 * 4))
    frame = messages(SimulationPlan(days=1, devices_per_region=devices, malformed_share=0.02))
    lines = [p.encode() for p in frame["payload"] if "\n" not in p]
    return (lines * (count // max(len(lines), 1) + 1))[:count]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def consumer_command(broker, landing: Path, consumer_id: str) -> list[str]:
    return [
        sys.executable, "-m", "sentinel_assets.cli.main", "consume", "--source", broker.url,
        "--landing", str(landing), "--consumer-id", consumer_id,
    ]  # fmt: skip


def status_of(landing: Path, consumer_id: str) -> dict[str, Any]:
    from sentinel_assets.stream.health import consumer_status

    return consumer_status(landing, consumer_id)


def landed_lines(landing: Path) -> int:
    total = 0
    for path in landing.glob("*.mqtt.jsonl"):
        with open(path, "rb") as handle:
            total += sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return total


def throughput(count: int, workdir: Path, log=print) -> dict[str, Any]:
    from sentinel_assets.stream.broker import running_broker

    root = Path(tempfile.mkdtemp(prefix="sentinel-stream-bench-"))
    with running_broker(root, password=PASSWORD) as broker:
        env = {**os.environ, **broker.env()}
        auth = ["-h", "127.0.0.1", "-p", str(broker.port), "-u", broker.username, "-P", PASSWORD]
        landing = workdir / "landing"
        shutil.rmtree(landing, ignore_errors=True)
        landing.mkdir(parents=True)
        # Both persistent sessions exist before anything is published.
        subprocess.run(["mosquitto_sub", *auth, "-c", "-i", "baseline", "-q", "1", "-t",
                        "fleet/+/+/telemetry", "-W", "1"], capture_output=True)  # fmt: skip
        first = subprocess.Popen(consumer_command(broker, landing, "bench"), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait_for(lambda: status_of(landing, "bench").get("subscribed"), 60, "the consumer")
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
        lines = payloads(PER_PUBLISHER * PUBLISHERS)
        waves = max(1, count // (PER_PUBLISHER * PUBLISHERS))
        count = waves * PER_PUBLISHER * PUBLISHERS
        started = time.perf_counter()
        for wave in range(waves):
            procs = []
            for i in range(PUBLISHERS):
                topic = f"fleet/region-{i}/SN-BENCH-{wave:06d}/telemetry"
                proc = subprocess.Popen(["mosquitto_pub", *auth, "-q", "1", "-t", topic, "-l"],
                                        stdin=subprocess.PIPE)  # fmt: skip
                chunk = lines[i * PER_PUBLISHER : (i + 1) * PER_PUBLISHER]
                threading.Thread(target=_feed, args=(proc, chunk), daemon=True).start()
                procs.append(proc)
            for proc in procs:
                proc.wait()
        publish_s = time.perf_counter() - started
        log(f"stream: {count:,} messages queued for both sessions in {publish_s:.1f} s")

        out = root / "baseline.out"
        started = time.perf_counter()
        with open(out, "wb") as handle:
            subprocess.run(["mosquitto_sub", *auth, "-c", "-i", "baseline", "-q", "1", "-t",
                            "fleet/+/+/telemetry", "-C", str(count)], stdout=handle,
                           check=True, timeout=3600)  # fmt: skip
            os.fsync(handle.fileno())
        baseline_s = time.perf_counter() - started
        log(f"stream: mosquitto_sub drained {count:,} in {baseline_s:.1f} s")

        rss: list[tuple[int, int]] = []  # (messages landed so far, RSS bytes)
        started = time.perf_counter()
        proc = subprocess.Popen(consumer_command(broker, landing, "bench"), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 3600
        while status_of(landing, "bench").get("messages", 0) < count:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the consumer stopped before draining the backlog")
            rss.append((status_of(landing, "bench").get("messages", 0), _rss_bytes(proc.pid)))
            time.sleep(0.1)
        # Every message durable and acknowledged; its batch lands at the size or age limit.
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        consumer_s = time.perf_counter() - started
        landed = landed_lines(landing)
        log(f"stream: sentinel consume drained {count:,} in {consumer_s:.1f} s ({landed:,} landed)")
    shutil.rmtree(landing, ignore_errors=True)
    # Status is rewritten every second: at small N the drain may pass a quarter unseen.
    quarter = [r for m, r in rss if m >= count // 4 and r] or [r for m, r in rss if m and r]
    return {
        "messages": count,
        "baseline_seconds": round(baseline_s, 2),
        "consumer_seconds": round(consumer_s, 2),
        "baseline_per_second": round(count / baseline_s),
        "consumer_per_second": round(count / consumer_s),
        "landed": landed,
        "rss_mib_at_quarter": round(quarter[0] / 2**20, 1) if quarter else None,
        "rss_mib_peak": round(max((r for _, r in rss), default=0) / 2**20, 1),
        "rss_mib_at_end": round(quarter[-1] / 2**20, 1) if quarter else None,
    }


def _feed(proc: subprocess.Popen, chunk: list[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"\n".join(chunk) + b"\n")
    proc.stdin.close()


def latency(rate: int, seconds: float, workdir: Path, log=print) -> dict[str, Any]:
    """Publish at `rate` for `seconds`; ticks of the landing sensor at its own interval."""
    import dagster as dg

    from sentinel_assets.cli.landing_ticks import LandingTicks, sensor_interval_s
    from sentinel_assets.stream.broker import running_broker
    from sentinel_assets.stream.publisher import paced, publish
    from sentinel_assets.stream.settings import broker_address
    from sentinel_assets.telemetry.simulate import SimulationPlan, published

    home = workdir / "latency-home"
    shutil.rmtree(home, ignore_errors=True)
    landing = home / "landing"
    landing.mkdir(parents=True)
    (home / "dagster").mkdir()
    total = int(rate * seconds)
    devices = max(1, total // (8 * 4 * 3))
    plan = SimulationPlan(days=3, devices_per_region=devices, malformed_share=0.02)
    sent = published(plan)[:total]
    interval = sensor_interval_s()
    root = Path(tempfile.mkdtemp(prefix="sentinel-stream-latency-"))
    published_at: dict[bytes, float] = {}
    visible_at: dict[str, float] = {}  # batch file name -> end of its ingestion run
    publishing: dict[str, float] = {}
    with (
        mock.patch.dict(os.environ, {"SENTINEL_HOME": str(home)}),  # restored for what follows
        running_broker(root, password=PASSWORD) as broker,
        dg.DagsterInstance.local_temp(str(home / "dagster"), overrides=NO_TELEMETRY) as instance,
    ):
        env = {**os.environ, **broker.env()}
        consumer = subprocess.Popen(
            consumer_command(broker, landing, "latency"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: status_of(landing, "latency").get("subscribed"), 60, "the consumer")
        address = broker_address(broker.url, broker.env())

        def publish_all() -> None:
            publishing["started"] = time.monotonic()
            publish(address, paced(sent, rate, published_at))
            publishing["seconds"] = time.monotonic() - publishing["started"]

        publisher = threading.Thread(target=publish_all, daemon=True)
        publisher.start()
        ticks = LandingTicks(home, instance)
        started = time.monotonic()
        while True:
            done = ticks.tick()
            for ingested in done:
                visible_at[ingested.name] = ingested.finished_at
            status = status_of(landing, "latency")
            received = status.get("messages", 0) >= len(sent) and status.get("queued") == 0
            drained = not publisher.is_alive() and received
            if (drained and not done) or time.monotonic() - started > seconds * 4 + 300:
                break
            ticks.wait(interval)
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(timeout=60)
    latencies = []
    for path in landing.glob("_batches/*/*.mqtt.jsonl"):
        at = visible_at.get(path.name)
        for line in path.read_text().splitlines():
            envelope = json.loads(line)
            payload = envelope.get("payload")
            sent_at = published_at.get(payload.encode()) if payload is not None else None
            if at is not None and sent_at is not None:
                latencies.append(at - sent_at)
    latencies.sort()
    log(
        f"stream: latency over {len(latencies):,} messages at {rate:,}/s, sensor every {interval} s"
    )
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)  # noqa: E731
    return {
        "rate_per_second": rate,
        "seconds": seconds,
        "messages": len(sent),
        "publish_seconds": round(publishing.get("seconds", float("nan")), 1),
        "measured": len(latencies),
        "sensor_interval_s": interval,
        "p50_s": pick(0.50) if latencies else None,
        "p95_s": pick(0.95) if latencies else None,
        "max_s": round(latencies[-1], 2) if latencies else None,
    }


def compare(count: int, rate: int, seconds: float, workdir: Path, log=print) -> dict[str, Any]:
    result: dict[str, Any] = {"throughput": throughput(count, workdir, log)}
    if seconds > 0:
        result["latency"] = latency(rate, seconds, workdir, log)
    t = result["throughput"]
    ratio = t["baseline_seconds"] / t["consumer_seconds"]
    result["targets"] = {
        "consumer_vs_mosquitto_sub": {
            "limit": TARGETS["consumer_vs_mosquitto_sub"],
            "measured": round(ratio, 3),
            "met": ratio >= TARGETS["consumer_vs_mosquitto_sub"] and t["landed"] >= t["messages"],
        }
    }
    return result


def render(result: dict[str, Any]) -> str:
    t = result["throughput"]
    lines = [
        f"MQTT stream, {size_label(t['messages'])} messages queued at a local Mosquitto:",
        "",
        "| subscriber | seconds | messages/s |",
        "|---|---:|---:|",
        f"| mosquitto_sub -c -q 1 -C N > file | {t['baseline_seconds']:.1f} | "
        f"{t['baseline_per_second']:,} |",
        f"| sentinel consume (fsynced, acknowledged, landed) | {t['consumer_seconds']:.1f} | "
        f"{t['consumer_per_second']:,} |",
        "",
        f"Consumer RSS: {t['rss_mib_at_quarter']} MiB a quarter through the drain, "
        f"{t['rss_mib_at_end']} MiB at the end, {t['rss_mib_peak']} MiB peak; "
        f"{t['landed']:,} messages landed.",
    ]
    if lat := result.get("latency"):
        lines += [
            "",
            f"Publish-to-`telemetry_events` latency at {lat['rate_per_second']:,} messages/s "
            f"for {lat['seconds']:g} s (published in {lat['publish_seconds']} s; landing sensor "
            f"every {lat['sensor_interval_s']} s, "
            f"{lat['measured']:,} messages): p50 {lat['p50_s']} s, p95 {lat['p95_s']} s, "
            f"max {lat['max_s']} s.",
        ]
    ratio = result["targets"]["consumer_vs_mosquitto_sub"]
    lines += [
        "",
        *targets_table({"consumer rate / mosquitto_sub rate (at least)": ratio}),
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stream")
    parser.add_argument("--messages", default="1m", help="backlog to drain (default 1m)")
    parser.add_argument("--rate", type=int, default=5000, help="latency run: messages/s")
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="0 to skip")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sentinel-stream-bench-"))
    result = compare(parse_size(args.messages), args.rate, args.latency_seconds, workdir)
    result["command"] = "python -m benchmarks.stream " + " ".join(argv or sys.argv[1:])
    result["machine"] = machine()
    print()
    print(render(result))
    if not args.no_write:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if result["targets"]["consumer_vs_mosquitto_sub"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
