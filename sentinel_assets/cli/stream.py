"""`sentinel consume`: the MQTT consumer as a long-running command (see `stream.consumer`)."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path

from sentinel_assets import paths
from sentinel_assets.stream.consumer import (
    Consumer,
    ConsumerError,
    ConsumerSettings,
    install_signal_handlers,
)
from sentinel_assets.stream.settings import broker_address


def consume_command(args: argparse.Namespace) -> int:
    address = broker_address(args.source)
    landing = Path(args.landing).expanduser() if args.landing else paths.landing_root()
    settings = ConsumerSettings(
        landing=landing,
        consumer_id=args.consumer_id or f"sentinel-{socket.gethostname()}-{os.getpid()}",
        share_group=args.share_group,
        receive_maximum=args.receive_maximum,
        batch_messages=args.batch_messages,
        batch_age_s=args.batch_age,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        protocol=args.protocol,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sentinel consume: %(message)s")
    try:
        consumer = Consumer(address, settings)
        install_signal_handlers(consumer)
        stats = consumer.run(max_seconds=args.max_seconds)
    except ConsumerError as error:
        raise ValueError(str(error).rstrip(".")) from None
    print(f"consumed {stats.messages:,} messages into {stats.batches:,} batch(es) in {landing}")
    return 0


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {raw!r}")
    return value


def add_commands(commands: argparse._SubParsersAction) -> None:
    consume = commands.add_parser(
        "consume", help="consume device telemetry from an MQTT broker into the landing zone"
    )
    consume.add_argument("--source", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    consume.add_argument("--landing", help="landing folder (default: $SENTINEL_HOME/landing)")
    consume.add_argument(
        "--consumer-id", help="MQTT client id: keep it stable so the session resumes"
    )
    consume.add_argument("--share-group", help="MQTT 5 shared subscription group")
    consume.add_argument("--receive-maximum", type=_positive, default=1000)
    consume.add_argument("--batch-messages", type=_positive, default=50_000)
    consume.add_argument("--batch-age", type=float, default=5.0, help="seconds (default 5)")
    consume.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    consume.add_argument(
        "--metrics-host", default="127.0.0.1", help="address to serve them on (default 127.0.0.1)"
    )
    consume.add_argument("--protocol", choices=("5", "3.1.1"), default="5")
    consume.add_argument("--max-seconds", type=float, help="stop after this long (tests)")
    consume.set_defaults(handler=consume_command)
