"""The production profile's settings, read from environment variables only (no Dagster here).

`python -m sentinel_assets.production check` says in one sentence what is missing or wrong
before the Dagster instance (deploy/production/dagster.yaml) or the report publisher tries
to use it; `make production-instance` runs it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

INSTANCE_ENV = (
    "SENTINEL_PG_HOST",
    "SENTINEL_PG_PORT",
    "SENTINEL_PG_USER",
    "SENTINEL_PG_PASSWORD",
    "SENTINEL_PG_DAGSTER_DB",
)
PUBLISH_SWITCH = "SENTINEL_PUBLISH_REPORTS"
PUBLISH_ENV = (
    "SENTINEL_PG_HOST",
    "SENTINEL_PG_PORT",
    "SENTINEL_PG_USER",
    "SENTINEL_PG_PASSWORD",
    "SENTINEL_PG_ANALYTICS_DB",
)
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class ProductionConfigError(ValueError):
    """A production setting is missing or invalid; the message is one sentence."""


def _missing(names: tuple[str, ...], env: Mapping[str, str]) -> list[str]:
    return [name for name in names if not env.get(name)]


def _check_common(env: Mapping[str, str]) -> None:
    port = env.get("SENTINEL_PG_PORT", "")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ProductionConfigError(f"SENTINEL_PG_PORT must be a TCP port number, not {port!r}.")
    mode = env.get("PGSSLMODE")
    if mode and mode not in SSL_MODES:
        raise ProductionConfigError(
            f"PGSSLMODE must be one of {', '.join(SSL_MODES)}, not {mode!r}."
        )
    ca_file = env.get("PGSSLROOTCERT")
    if ca_file and ca_file != "system" and not os.path.isfile(ca_file):
        raise ProductionConfigError(f"PGSSLROOTCERT names {ca_file!r}, which is not a file.")


def check_instance_env(env: Mapping[str, str] | None = None) -> None:
    """The variables deploy/production/dagster.yaml reads are all set and sane."""
    env = os.environ if env is None else env
    missing = _missing(INSTANCE_ENV, env)
    if missing:
        raise ProductionConfigError(
            "The production Dagster instance needs these environment variables set: "
            + ", ".join(missing)
            + "."
        )
    _check_common(env)


def publishing_enabled(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    value = env.get(PUBLISH_SWITCH, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ProductionConfigError(f"{PUBLISH_SWITCH} must be 1/true or 0/false, not {value!r}.")


@dataclass(frozen=True)
class PublishTarget:
    """Where report tables are published: a PostgreSQL database and schema."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    schema: str = "sentinel_reports"
    connect_timeout_s: int = 10
    statement_timeout_s: int = 300

    def connect_kwargs(self) -> dict[str, object]:
        """psycopg2.connect() arguments; TLS (PGSSLMODE, PGSSLROOTCERT) comes from libpq's
        own environment variables."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
            "connect_timeout": self.connect_timeout_s,
            "application_name": "sentinel-publish",
            "options": f"-c statement_timeout={self.statement_timeout_s * 1000}",
        }


def publish_target(env: Mapping[str, str] | None = None) -> PublishTarget:
    env = os.environ if env is None else env
    missing = _missing(PUBLISH_ENV, env)
    if missing:
        raise ProductionConfigError(
            f"{PUBLISH_SWITCH} is on, so these environment variables must be set: "
            + ", ".join(missing)
            + "."
        )
    _check_common(env)
    schema = env.get("SENTINEL_PUBLISH_SCHEMA", "sentinel_reports")
    if not schema.isidentifier() or schema.lower() != schema:
        raise ProductionConfigError(
            f"SENTINEL_PUBLISH_SCHEMA must be a lowercase identifier, not {schema!r}."
        )
    return PublishTarget(
        host=env["SENTINEL_PG_HOST"],
        port=int(env["SENTINEL_PG_PORT"]),
        user=env["SENTINEL_PG_USER"],
        password=env["SENTINEL_PG_PASSWORD"],
        dbname=env["SENTINEL_PG_ANALYTICS_DB"],
        schema=schema,
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["check"]:
        print("usage: python -m sentinel_assets.production check", file=sys.stderr)
        return 2
    try:
        check_instance_env()
        if publishing_enabled():
            publish_target()
    except ProductionConfigError as error:
        print(f"sentinel production profile: {error}", file=sys.stderr)
        return 1
    print("sentinel production profile: environment complete.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
