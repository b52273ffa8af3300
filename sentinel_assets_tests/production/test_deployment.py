"""The deployment files (Dockerfile, deploy/compose.yaml) hold together without a container
engine: no machine here runs one, so they are checked as files. Every service the production
profile needs is there, every variable the compose file reads is documented, no secret is in
the repository, and the environment the Sentinel services get passes Sentinel's own
production-profile checks (instance, publishing, Celery executor, Delta on S3)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml

from sentinel_assets import delta, production
from sentinel_assets.defs import executors

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose.yaml"
ENV_EXAMPLE = REPO / "deploy" / "compose.env.example"
DOCKERFILE = REPO / "Dockerfile"
SENTINEL_SERVICES = ("webserver", "daemon", "worker-1", "worker-2", "consumer")
# `${NAME}`, `${NAME:-default}`, `${NAME:?message}`; `$${...}` is a literal `$` for the shell.
REFERENCE = re.compile(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET = re.compile(r"PASSWORD|SECRET")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def example_env() -> dict[str, str]:
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line and line[0] != "#"]
    return dict(line.split("=", 1) for line in lines)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's own substitution rules, enough for this file."""

    def one(match: re.Match[str]) -> str:
        name, kind, default = match.groups()
        if env.get(name):
            return env[name]
        if kind in (":?", "?"):
            raise KeyError(name)
        return default or ""

    return REFERENCE.sub(one, value).replace("$$", "$")


def service_env(compose: dict, service: str, env: dict[str, str]) -> dict[str, str]:
    raw = compose["services"][service]["environment"]
    return {key: interpolate(str(value), env) for key, value in raw.items()}


def filled(example: dict[str, str]) -> dict[str, str]:
    return {k: v or f"test-{k.lower()}" for k, v in example.items()}


def test_every_service_of_the_production_profile_is_there(compose):
    services = compose["services"]
    assert set(services) == {
        "postgres", "redis", "minio", "minio-bucket", "mosquitto", *SENTINEL_SERVICES,
    }  # fmt: skip
    for name in SENTINEL_SERVICES:
        assert services[name]["build"]["context"] == ".."
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
    commands = {name: shlex.join(services[name]["command"]) for name in SENTINEL_SERVICES}
    assert commands["webserver"].startswith("dagster-webserver ")
    assert commands["daemon"].startswith("dagster-daemon run ")
    workers = [commands["worker-1"], commands["worker-2"]]
    assert all(
        c.startswith("dagster-celery worker start -A dagster_celery.app -y ") for c in workers
    )
    assert len(set(workers)) == 2  # two distinctly named workers
    assert commands["consumer"].startswith("sentinel consume --source mqtt://mosquitto:1883 ")
    assert importlib.util.find_spec("dagster_celery.app")  # the -A app the workers import


def test_dependencies_and_volumes_name_things_that_exist(compose):
    services, volumes = compose["services"], set(compose["volumes"])
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, (name, needed)
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), (name, source)
            else:
                assert source in volumes, (name, source)
    initdb = sorted((REPO / "deploy" / "production" / "initdb").iterdir())
    assert initdb and all(p.stat().st_mode & 0o111 for p in initdb if p.suffix == ".sh")


def strings(node: object) -> list[str]:
    """Every string value of the loaded file (comments are not configuration)."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def test_every_variable_it_reads_is_documented_and_no_secret_has_a_default(compose):
    references = [ref for text in strings(compose) for ref in REFERENCE.findall(text)]
    documented = set(example_env())
    assert {name for name, _, _ in references} <= documented
    assert {"SENTINEL_PG_PASSWORD", "AWS_SECRET_ACCESS_KEY"} <= {name for name, _, _ in references}
    for name, kind, _ in references:
        if SECRET.search(name) or name == "AWS_ACCESS_KEY_ID":
            assert kind == ":?", f"{name} must be required (${{{name}:?...}}), not defaulted"
    assert all(not value for key, value in example_env().items() if SECRET.search(key))
    assert "deploy/.env" in (REPO / ".gitignore").read_text().splitlines()


def test_a_missing_secret_stops_compose_with_its_name(compose):
    env = filled(example_env())
    env.pop("SENTINEL_PG_PASSWORD")
    with pytest.raises(KeyError, match="SENTINEL_PG_PASSWORD"):
        service_env(compose, "webserver", env)


@pytest.mark.parametrize("service", SENTINEL_SERVICES)
def test_the_sentinel_services_get_an_environment_the_profile_accepts(compose, service):
    env = service_env(compose, service, filled(example_env()))
    production.check_instance_env(env)
    assert production.publishing_enabled(env)
    target = production.publish_target(env)
    assert (target.host, target.dbname) == ("postgres", "analytics")
    assert executors.selected_executor(env).name == "celery"
    assert env["SENTINEL_STORAGE"] == "delta" and env["SENTINEL_DELTA_ROOT"].startswith("s3://")
    options = delta.storage_options(env)
    assert options["AWS_ENDPOINT_URL"] == "http://minio:9000" and options["AWS_ALLOW_HTTP"]
    # The image's instance folder is the one the environment names.
    assert f"DAGSTER_HOME={env['DAGSTER_HOME']}" in DOCKERFILE.read_text().replace(" ", "")


def test_the_image_copies_what_the_services_run():
    text = DOCKERFILE.read_text()
    copies = re.findall(r"^COPY\s+(.+)$", text, flags=re.MULTILINE)
    sources = [part for line in copies for part in line.split()[:-1]]
    assert sources and all((REPO / source).exists() for source in sources), sources
    assert "deploy/production/dagster.yaml" in sources  # the PostgreSQL instance
    assert "deploy/production/celery.yaml" in sources  # the workers' -y file
    assert "pip install '.[production]'" in text
    assert re.search(r"^USER\s+(?!root)\w+", text, flags=re.MULTILINE)  # not run as root


def test_the_shipped_broker_config_has_the_settings_the_tests_run():
    """deploy/mosquitto/mosquitto.conf says what `stream.broker` (used by every broker test)
    says about queues, in-flight window and persistence."""
    from sentinel_assets.stream import broker

    shipped = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text().splitlines()
    for setting in (
        f"max_queued_messages {broker.QUEUED_MESSAGES}",
        f"max_inflight_messages {broker.INFLIGHT_MESSAGES}",
        f"autosave_interval {broker.AUTOSAVE_SECONDS}",
        "max_queued_bytes 0",
        "persistence true",
        "allow_anonymous false",
    ):
        assert setting in shipped, setting
