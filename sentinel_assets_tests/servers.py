"""Throwaway servers for the production-profile tests, on 127.0.0.1 only.

``running_postgres()`` initdb's a PostgreSQL cluster (Debian's binaries) into a temporary
folder, with a password, TLS on a freshly made self-signed certificate and a ``pg_hba.conf``
that accepts TLS connections only (``hostssl``), starts ``postgres`` in the foreground as a
child of the test process (it dies with it, even if pytest is SIGKILLed) and always stops it
and deletes the folder on exit. As root the cluster runs as the ``postgres`` user (initdb
refuses root).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sentinel_assets_tests.webserver import free_port

PG_BIN = Path(os.environ.get("SENTINEL_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "sentinel"
DATABASES = ("dagster", "analytics")
INSTALL_HINT = "run `make servers` (as root, it installs Debian's postgresql-15)"


def stop(proc: subprocess.Popen, root: Path) -> None:
    """End a server the test started (SIGTERM, then SIGKILL after 10 s) and remove its folder."""
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    if proc.poll() is None:
        proc.kill()
    shutil.rmtree(root, ignore_errors=True)


class ServerUnavailable(RuntimeError):
    """The server cannot be started on this machine (binaries missing); tests skip."""


def server_or_skip(running: contextlib.AbstractContextManager, what: str) -> Iterator:
    """Yield the server `running` starts, stopping it afterwards; skip with one line when it
    cannot be started here."""
    import pytest

    try:
        server = running.__enter__()
    except ServerUnavailable as reason:
        pytest.skip(f"no {what}: {reason}")
    try:
        yield server
    finally:
        running.__exit__(None, None, None)


def _preexec(uid: int | None, gid: int | None):
    # Loaded here, not in the child: after setuid the interpreter's files (e.g. under /root)
    # may not be readable any more.
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def setup() -> None:
        if gid is not None:
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        if prctl is not None:  # after setuid, which clears the death signal
            prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


@dataclass
class Postgres:
    """A running throwaway cluster and how to reach it."""

    root: Path
    port: int
    password: str
    ca_file: Path
    uid: int | None
    gid: int | None
    host: str = "127.0.0.1"
    user: str = PG_USER
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def env(self) -> dict[str, str]:
        """The production profile's environment variables for this server."""
        return {
            "SENTINEL_PG_HOST": self.host,
            "SENTINEL_PG_PORT": str(self.port),
            "SENTINEL_PG_USER": self.user,
            "SENTINEL_PG_PASSWORD": self.password,
            "SENTINEL_PG_DAGSTER_DB": "dagster",
            "SENTINEL_PG_ANALYTICS_DB": "analytics",
            "PGSSLMODE": "verify-full",
            "PGSSLROOTCERT": str(self.ca_file),
        }

    def dsn(self, db: str = "analytics") -> str:
        return (
            f"host={self.host} port={self.port} user={self.user} password={self.password} "
            f"dbname={db} sslmode=verify-full sslrootcert={self.ca_file}"
        )

    def connect(self, db: str = "analytics"):
        import psycopg2

        conn = psycopg2.connect(self.dsn(db), connect_timeout=10)
        conn.autocommit = True
        return conn

    def query(self, sql: str, db: str = "analytics", params: tuple = ()) -> list[tuple]:
        with contextlib.closing(self.connect(db)) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def start(self, timeout: float = 60) -> None:
        log = open(self.log_file, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "shared_buffers=32MB",
                "-c",
                "max_connections=100",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            preexec_fn=_preexec(self.uid, self.gid),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.query("SELECT 1", db="postgres")
                return
            except Exception as error:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL did not start ({error}); log: {self.log_tail()}"
                    ) from error
                time.sleep(0.2)

    def stop(self) -> None:
        """Fast shutdown: backends are disconnected, the cluster stays consistent."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _run(cmd: list[str], uid: int | None, gid: int | None) -> None:
    result = subprocess.run(
        cmd, capture_output=True, text=True, cwd="/", preexec_fn=_preexec(uid, gid), check=False
    )
    if result.returncode:
        raise RuntimeError(f"{Path(cmd[0]).name} failed: {result.stderr.strip()}")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and its key, in `directory`."""
    crt, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(crt),
        ],
        capture_output=True,
        check=True,
    )
    key.chmod(0o600)
    return crt, key


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A fresh TLS-only cluster with databases `dagster` and `analytics`."""
    if not (PG_BIN / "initdb").exists():
        raise ServerUnavailable(f"PostgreSQL binaries not found in {PG_BIN}: {INSTALL_HINT}")
    if shutil.which("openssl") is None:
        raise ServerUnavailable("openssl not found (needed for the test server's certificate)")
    uid = gid = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError as error:
            raise ServerUnavailable("running as root without a `postgres` user") from error
        uid, gid = account.pw_uid, account.pw_gid
    # Not pytest's tmp_path: it is private to root (0700), and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="sentinel-pg-"))
    server = None
    try:
        if uid is not None:
            os.chown(root, uid, gid)
        password = secrets.token_urlsafe(16)
        pwfile = root / "pwfile"
        pwfile.write_text(password)
        if uid is not None:
            os.chown(pwfile, uid, gid)
        data = root / "data"
        _run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            uid,
            gid,
        )
        pwfile.unlink()
        crt, key = self_signed_certificate(data)
        if uid is not None:
            for path in (crt, key):
                os.chown(path, uid, gid)
        ca_file = root / "ca.crt"
        shutil.copy(crt, ca_file)
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        # TLS only: a plain connection is refused, so a working client proves it used TLS.
        (data / "pg_hba.conf").write_text(
            "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n"
        )
        server = Postgres(root, free_port(), password, ca_file, uid, gid)
        server.start()
        for db in DATABASES:
            server.query(f"CREATE DATABASE {db}", db="postgres")
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


REDIS_SERVER = os.environ.get("SENTINEL_REDIS_SERVER", "/usr/bin/redis-server")


@dataclass
class Redis:
    port: int
    proc: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    def url(self, db: int = 0) -> str:
        return f"redis://{self.host}:{self.port}/{db}"


@contextlib.contextmanager
def running_redis() -> Iterator[Redis]:
    """A throwaway, in-memory-only redis-server on 127.0.0.1."""
    if not Path(REDIS_SERVER).exists():
        raise ServerUnavailable(
            f"{REDIS_SERVER} not found: run `make servers` (as root it installs redis-server)"
        )
    root = Path(tempfile.mkdtemp(prefix="sentinel-redis-"))
    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(root), "--protected-mode", "yes"],
        stdout=open(root / "redis.log", "wb"),  # noqa: SIM115 - the child keeps it
        stderr=subprocess.STDOUT,
        preexec_fn=_preexec(None, None),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            import socket

            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server did not start: {(root / 'redis.log').read_text()}"
                )
            time.sleep(0.1)
        yield Redis(port, proc)
    finally:
        stop(proc, root)


@dataclass
class S3Emulator:
    endpoint: str
    proc: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        return {
            "SENTINEL_S3_ENDPOINT": self.endpoint,
            "SENTINEL_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=name)


@contextlib.contextmanager
def running_s3() -> Iterator[S3Emulator]:
    """moto's S3 emulator (`moto_server`, from the dev extra) on 127.0.0.1."""
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        raise ServerUnavailable("moto_server not installed: `pip install 'moto[server]'`")
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="sentinel-s3-"))
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=open(root / "moto.log", "wb"),  # noqa: SIM115 - the child keeps it
        stderr=subprocess.STDOUT,
        preexec_fn=_preexec(None, None),
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(endpoint, timeout=1)
                break
            except requests.RequestException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto_server did not start: {(root / 'moto.log').read_text()}"
                    ) from None
                time.sleep(0.2)
        yield S3Emulator(endpoint, proc)
    finally:
        stop(proc, root)
