"""Run a real ``dagster-webserver`` for UI-level tests and drive it over GraphQL.

Typical use in a test::

    with running_webserver(workspace_yaml, {"DAGSTER_HOME": str(home)}) as base_url:
        ui = DagsterUI(base_url)
        run_id, status = ui.run_partition("my_job", "eu-west")
        assert status is DagsterRunStatus.SUCCESS, ui.run_error_messages(run_id)
        [execution] = ui.asset_check_executions("my_asset", "my_check", partition="eu-west")

``running_webserver`` picks a free port on 127.0.0.1, starts the webserver of the *current*
interpreter (``sys.executable -m dagster_webserver -w ... -h 127.0.0.1 -p PORT``) in its own
process group, waits (bounded) until ``/server_info`` answers *and* every code location of the
workspace is ``LOADED`` without a load error, yields ``http://127.0.0.1:PORT`` and always kills
the whole process group (webserver, its gRPC code server and any run worker) on exit. The
webserver's stdout/stderr go to a log file; when start-up fails, or the ``with`` body raises,
the log path and its last lines are attached to the exception as a note.

Runs launched through GraphQL without the daemon
------------------------------------------------
Dagster's default instance uses the ``QueuedRunCoordinator``: a run submitted from the UI or
GraphQL is only put in the queue (status ``QUEUED``), and ``dagster-daemon`` dequeues it. With
only ``dagster-webserver`` running the run stays ``QUEUED`` for ever. For tests, give the
instance a ``dagster.yaml`` that sets the synchronous coordinator, which hands the run straight
to the ``DefaultRunLauncher`` (the run worker is a subprocess of the code server, so it lives
in the webserver's process group and dies with it)::

    run_coordinator:
      module: dagster._core.run_coordinator
      class: DefaultRunCoordinator

(``module: dagster.core.run_coordinator`` from older docs is still accepted by the instance
loader although ``import dagster.core`` fails in 1.13; in 1.13 the class is an alias of
``SyncInMemoryRunCoordinator``.)

``write_test_instance_yaml`` writes exactly that (plus ``telemetry: enabled: false``). Do not
copy a ``dagster.yaml`` that has a ``run_queue:`` block and add ``run_coordinator:`` to it:
Dagster refuses the pair ("Found config for `run_queue` which is incompatible with
`run_coordinator` config entry"). With this coordinator the queue's limits
(``max_concurrent_runs``, tag limits) do not apply.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

__all__ = [
    "TERMINAL_RUN_STATUSES",
    "DagsterUI",
    "WebserverStartupError",
    "free_port",
    "running_webserver",
    "write_test_instance_yaml",
]

TERMINAL_RUN_STATUSES = frozenset(
    {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
)

TEST_INSTANCE_YAML = """\
# Written by sentinel_assets_tests.webserver for UI-level tests: launch runs straight away
# (no run queue), so they execute with only dagster-webserver running (no dagster-daemon).
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator

telemetry:
  enabled: false
"""

_WORKSPACE_QUERY = """
query HarnessWorkspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


class WebserverStartupError(RuntimeError):
    """The webserver exited, failed to load a code location, or did not get ready in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def write_test_instance_yaml(dagster_home: Path, extra_yaml: str = "") -> Path:
    """Prepare a test ``DAGSTER_HOME``: a ``dagster.yaml`` that runs without the daemon.

    ``extra_yaml`` is appended (e.g. a ``concurrency:`` block; never ``run_queue:``). Also
    marks the UI's "Join the Dagster community" dialog as seen (``.nux/nux.yaml``); the UI
    otherwise shows it on every page served from 127.0.0.1 and it covers screenshots.
    """
    dagster_home = Path(dagster_home)
    (dagster_home / ".nux").mkdir(parents=True, exist_ok=True)
    (dagster_home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    path = dagster_home / "dagster.yaml"
    path.write_text(TEST_INSTANCE_YAML + ("\n" + extra_yaml if extra_yaml else ""))
    return path


def _log_tail(log_path: Path, lines: int = 60) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError as exc:
        return f"<could not read {log_path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _graphql(
    base_url: str, query: str, variables: Mapping[str, Any] | None = None, *, timeout: float = 60.0
) -> dict[str, Any]:
    response = requests.post(
        f"{base_url}/graphql",
        json={"query": query, "variables": dict(variables or {})},
        timeout=timeout,
    )
    response.raise_for_status()
    payload = response.json()
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


def _location_state(base_url: str) -> tuple[bool, str]:
    """(ready, detail). Raises WebserverStartupError when a location failed to load."""
    result = _graphql(base_url, _WORKSPACE_QUERY, timeout=10)["workspaceOrError"]
    if result["__typename"] != "Workspace":
        raise WebserverStartupError(f"workspaceOrError: {result.get('message', result)}")
    entries = result["locationEntries"]
    if not entries:
        return False, "workspace has no code locations yet"
    pending = []
    for entry in entries:
        loaded = entry["locationOrLoadError"]
        if entry["loadStatus"] != "LOADED":
            pending.append(f"{entry['name']}: {entry['loadStatus']}")
        elif loaded is None or loaded["__typename"] == "PythonError":
            detail = (loaded or {}).get("message", "no location and no error")
            stack = "".join((loaded or {}).get("stack") or [])
            raise WebserverStartupError(
                f"code location {entry['name']!r} failed to load: {detail}\n{stack}"
            )
    return not pending, ", ".join(pending) or "all locations LOADED"


def _wait_until_ready(proc: subprocess.Popen[bytes], base_url: str, deadline: float) -> None:
    detail = "webserver not answering yet"
    while True:
        code = proc.poll()
        if code is not None:
            raise WebserverStartupError(
                f"dagster-webserver exited with code {code} during start-up"
            )
        try:
            if requests.get(f"{base_url}/server_info", timeout=5).ok:
                ready, detail = _location_state(base_url)
                if ready:
                    return
        except requests.RequestException as exc:
            detail = f"{type(exc).__name__}"
        if time.monotonic() > deadline:
            raise WebserverStartupError(f"webserver not ready in time; last state: {detail}")
        time.sleep(0.5)


def _die_with_parent() -> None:
    """Child-side (preexec): get SIGTERM when the test process dies, even by SIGKILL.

    Covers what ``finally`` cannot: pytest killed by SIGTERM/SIGKILL (e.g. a CI timeout).
    The signal reaches the webserver only; its code server exits on its own when the
    webserver's heartbeat stops (45 s). Linux only; a no-op elsewhere.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after ``grace`` s."""
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    # Children (code server, run workers) share the group and may outlive the leader.
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def running_webserver(
    workspace_yaml: Path,
    env: Mapping[str, str],
    *,
    timeout: float = 120.0,
    log_path: Path | None = None,
    cwd: Path | None = None,
    inherit_env: bool = True,
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Start ``dagster-webserver`` for ``workspace_yaml``; yield its base URL.

    ``env`` is laid over ``os.environ`` (``inherit_env=False`` uses it alone; then it must
    carry PATH etc.). Put ``DAGSTER_HOME`` in it, normally a temp dir prepared with
    :func:`write_test_instance_yaml`. ``cwd`` defaults to the workspace file's folder, which
    is what ``python_module`` entries without ``working_directory`` resolve against. The log
    goes to ``log_path`` (default ``$DAGSTER_HOME/webserver.log`` or a temp file).
    """
    workspace_yaml = Path(workspace_yaml).resolve()
    if not workspace_yaml.is_file():
        raise FileNotFoundError(workspace_yaml)
    full_env = {**(os.environ if inherit_env else {}), **env, "PYTHONUNBUFFERED": "1"}
    if log_path is None:
        if full_env.get("DAGSTER_HOME"):
            log_path = Path(full_env["DAGSTER_HOME"]) / "webserver.log"
        else:
            fd, name = tempfile.mkstemp(prefix="dagster-webserver-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout

    proc: subprocess.Popen[bytes] | None = None
    try:
        for attempt in range(3):  # free_port() can race with another process; retry then
            port = free_port()
            base_url = f"http://127.0.0.1:{port}"
            command = [
                sys.executable, "-m", "dagster_webserver",
                "-w", str(workspace_yaml), "-h", "127.0.0.1", "-p", str(port),
                *extra_args,
            ]  # fmt: skip
            with log_path.open("ab") as log:
                log.write(f"\n=== attempt {attempt + 1}: {' '.join(command)}\n".encode())
                log.flush()
                proc = subprocess.Popen(
                    command,
                    cwd=cwd or workspace_yaml.parent,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            try:
                _wait_until_ready(proc, base_url, deadline)
                break
            except WebserverStartupError:
                port_taken = "address already in use" in _log_tail(log_path, 20).lower()
                if attempt == 2 or proc.poll() is None or not port_taken:
                    raise
                _kill_group(proc)
        yield base_url
    except BaseException as exc:
        if isinstance(exc, Exception):
            exc.add_note(
                f"dagster-webserver log: {log_path}\n--- last lines ---\n{_log_tail(log_path)}"
            )
        raise
    finally:
        if proc is not None:
            _kill_group(proc)


def _key_path(asset_key: str | Sequence[str]) -> list[str]:
    return asset_key.split("/") if isinstance(asset_key, str) else list(asset_key)


_ASSET_KEYS_QUERY = """
query HarnessAssetKeys { assetNodes { assetKey { path } } }
"""

_ASSET_CHECKS_QUERY = """
query HarnessAssetChecks($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      assetChecksOrError {
        __typename
        ... on AssetChecks { checks { name description } }
        ... on Error { message }
      }
    }
    ... on Error { message }
  }
}
"""

_CHECK_EXECUTIONS_QUERY = """
query HarnessCheckExecutions(
  $assetKey: AssetKeyInput!, $checkName: String!, $partition: String, $limit: Int!
) {
  assetCheckExecutions(
    assetKey: $assetKey, checkName: $checkName, partition: $partition, limit: $limit
  ) {
    id
    runId
    status
    partition
    timestamp
    evaluation {
      success
      severity
      description
      partition
      metadataEntries {
        __typename
        label
        ... on TextMetadataEntry { text }
        ... on IntMetadataEntry { intValue }
        ... on FloatMetadataEntry { floatValue }
        ... on BoolMetadataEntry { boolValue }
        ... on JsonMetadataEntry { jsonString }
        ... on MarkdownMetadataEntry { mdStr }
      }
    }
  }
}
"""

_PARTITION_STATUS_QUERY = """
query HarnessPartitionStatus($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      partitionStats { numMaterialized numPartitions numFailed numMaterializing }
      assetPartitionStatuses {
        __typename
        ... on DefaultPartitionStatuses {
          materializedPartitions failedPartitions
          unmaterializedPartitions materializingPartitions
        }
      }
    }
    ... on Error { message }
  }
}
"""

_RUN_LOGS_QUERY = """
query HarnessRunLogs($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
        ... on ErrorEvent { error { message } }
      }
    }
    ... on Error { message }
  }
}
"""


class DagsterUI:
    """Small GraphQL driver for a running webserver (see :func:`running_webserver`)."""

    def __init__(self, base_url: str, *, timeout: int = 60) -> None:
        parts = urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.client = DagsterGraphQLClient(
            parts.hostname or "127.0.0.1", port_number=parts.port, timeout=timeout
        )

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Raw query via ``requests``; returns ``data``, raises on GraphQL ``errors``."""
        return _graphql(self.base_url, query, variables, timeout=self.timeout)

    def asset_keys(self) -> list[str]:
        """Keys of all assets defined in the workspace, ``/``-joined, sorted."""
        nodes = self.graphql(_ASSET_KEYS_QUERY)["assetNodes"]
        return sorted("/".join(node["assetKey"]["path"]) for node in nodes)

    def asset_check_names(self, asset_key: str | Sequence[str]) -> list[str]:
        data = self.graphql(_ASSET_CHECKS_QUERY, {"assetKey": {"path": _key_path(asset_key)}})
        node = data["assetNodeOrError"]
        if node["__typename"] != "AssetNode":
            raise LookupError(f"{asset_key}: {node.get('message', node['__typename'])}")
        checks = node["assetChecksOrError"]
        if checks["__typename"] != "AssetChecks":
            raise LookupError(f"{asset_key}: {checks.get('message', checks['__typename'])}")
        return sorted(check["name"] for check in checks["checks"])

    def launch_partition(
        self,
        job_name: str,
        partition_key: str,
        *,
        tags: Mapping[str, str] | None = None,
        run_config: Mapping[str, Any] | None = None,
        repository_location_name: str | None = None,
        repository_name: str | None = None,
    ) -> str:
        """Submit ``job_name`` for one partition; return the run id."""
        return self.client.submit_job_execution(
            job_name,
            repository_location_name=repository_location_name,
            repository_name=repository_name,
            run_config=dict(run_config) if run_config is not None else None,
            tags={**(tags or {}), "dagster/partition": partition_key},
        )

    def wait_for_run(
        self, run_id: str, *, timeout: float = 300.0, poll: float = 1.0
    ) -> DagsterRunStatus:
        """Poll until the run is SUCCESS/FAILURE/CANCELED; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        status = self.client.get_run_status(run_id)
        while status not in TERMINAL_RUN_STATUSES:
            if time.monotonic() > deadline:
                hint = (
                    " (QUEUED: is the instance using DefaultRunCoordinator? see module doc)"
                    if status is DagsterRunStatus.QUEUED
                    else ""
                )
                raise TimeoutError(f"run {run_id} still {status.value} after {timeout}s{hint}")
            time.sleep(poll)
            status = self.client.get_run_status(run_id)
        return status

    def run_partition(
        self, job_name: str, partition_key: str, *, timeout: float = 300.0, **kwargs: Any
    ) -> tuple[str, DagsterRunStatus]:
        run_id = self.launch_partition(job_name, partition_key, **kwargs)
        return run_id, self.wait_for_run(run_id, timeout=timeout)

    def run_error_messages(self, run_id: str) -> list[str]:
        """ERROR-level messages and error texts of a run, for assertion messages."""
        logs = self.graphql(_RUN_LOGS_QUERY, {"runId": run_id})["logsForRun"]
        if logs["__typename"] != "EventConnection":
            return [logs.get("message", logs["__typename"])]
        out = []
        for event in logs["events"]:
            if event.get("level") in {"ERROR", "CRITICAL"} or event.get("error"):
                err = (event.get("error") or {}).get("message", "")
                out.append(f"{event['__typename']}: {event.get('message', '')} {err}".strip())
        return out

    def asset_check_executions(
        self,
        asset_key: str | Sequence[str],
        check_name: str,
        *,
        partition: str | None = None,
        limit: int = 25,
    ) -> list[dict[str, Any]]:
        """Newest-first executions of one check (``partition=None``: all partitions).

        Each item has ``status`` (SUCCEEDED, FAILED, IN_PROGRESS, SKIPPED, EXECUTION_FAILED),
        ``runId``, ``partition`` and ``evaluation`` (``success``, ``severity``, metadata).
        """
        variables = {
            "assetKey": {"path": _key_path(asset_key)},
            "checkName": check_name,
            "partition": partition,
            "limit": limit,
        }
        return self.graphql(_CHECK_EXECUTIONS_QUERY, variables)["assetCheckExecutions"]

    def partition_status(self, asset_key: str | Sequence[str]) -> dict[str, Any]:
        """``partitionStats`` and ``assetPartitionStatuses`` of a partitioned asset."""
        data = self.graphql(_PARTITION_STATUS_QUERY, {"assetKey": {"path": _key_path(asset_key)}})
        node = data["assetNodeOrError"]
        if node["__typename"] != "AssetNode":
            raise LookupError(f"{asset_key}: {node.get('message', node['__typename'])}")
        return {"stats": node["partitionStats"], "statuses": node["assetPartitionStatuses"]}
