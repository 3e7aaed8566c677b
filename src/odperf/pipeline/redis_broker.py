"""Redis Streams with consumer groups (the default broker), and a local redis-server for a run.

Entries are XADDed to a stream; detector instances read it as consumers of one group (XREADGROUP ``>``: each
entry to one of them), acknowledge with XACK, and take over a dead consumer's unacknowledged entries with
XAUTOCLAIM. A broker that goes away mid-run (a restart) is retried by redis-py's own Retry with
exponential backoff for ``retry_s``; past that the operation raises BrokerUnavailable.

``LocalRedis`` is the broker odperf starts when given no address: 127.0.0.1, a free port, its data in a
private folder with the append-only file fsynced on every write, so a restart (even a SIGKILL) loses no
entry Redis acknowledged.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from odperf.pipeline.broker import Broker, BrokerError, BrokerUnavailable, Entry, GroupState

BACKOFF_CAP_S = 0.5
START_WAIT_S = 15.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreams(Broker):
    """A Broker over one Redis server (``redis://host:port/db``)."""

    def __init__(self, address: str, retry_s: float = 20.0) -> None:
        self.address = address
        probe = redis.Redis.from_url(address, socket_connect_timeout=3, socket_timeout=3)
        try:
            probe.ping()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise BrokerError(f"broker {address}: nobody answers ({str(exc).splitlines()[0]}); start redis-server "
                              f"there, or give no broker address and odperf starts a local one") from None
        except ResponseError as exc:
            raise BrokerError(f"broker {address}: {exc} (a password? give redis://:PASSWORD@HOST:PORT)") from None
        finally:
            probe.close()
        retries = max(1, int(retry_s / BACKOFF_CAP_S))
        self.client = redis.Redis.from_url(
            address, socket_connect_timeout=2, socket_timeout=10, health_check_interval=0,
            retry=Retry(ExponentialBackoff(cap=BACKOFF_CAP_S, base=0.02), retries),
            retry_on_error=[RedisConnectionError, RedisTimeoutError])

    def _do(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise BrokerUnavailable(f"{what} on {self.address}: {exc}") from exc

    def ensure_group(self, stream: str, group: str, redeliver_after_s: float = 10.0) -> None:
        try:
            self._do("XGROUP CREATE", self.client.xgroup_create, stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def publish(self, stream: str, fields: dict[str, Any]) -> str:
        return _text(self._do("XADD", self.client.xadd, stream, fields))

    def read(self, stream: str, group: str, consumer: str, count: int, block_s: float) -> list[Entry]:
        reply = self._do("XREADGROUP", self.client.xreadgroup, group, consumer, {stream: ">"}, count=count,
                         block=max(1, int(block_s * 1000)))
        return [Entry(_text(i), _fields(f)) for _, entries in reply or [] for i, f in entries if f is not None]

    def ack(self, stream: str, group: str, entry_id: str) -> None:
        self._do("XACK", self.client.xack, stream, group, entry_id)

    def claim_stale(self, stream: str, group: str, consumer: str, idle_s: float, count: int) -> list[Entry]:
        reply = self._do("XAUTOCLAIM", self.client.xautoclaim, stream, group, consumer,
                         min_idle_time=int(idle_s * 1000), start_id="0-0", count=count)
        out = []
        for entry_id, fields in reply[1]:
            if fields is None:
                continue
            info = self._do("XPENDING", self.client.xpending_range, stream, group, min=entry_id, max=entry_id, count=1)
            out.append(Entry(_text(entry_id), _fields(fields), int(info[0]["times_delivered"]) if info else 2))
        return out

    def state(self, stream: str, group: str) -> GroupState:
        groups = self._do("XINFO GROUPS", self.client.xinfo_groups, stream)
        mine = next((g for g in groups if _text(g["name"]) == group), None)
        if mine is None:
            return GroupState(lag=0, pending=0)
        summary = self._do("XPENDING", self.client.xpending, stream, group)
        per = {_text(c["name"]): int(c["pending"]) for c in summary.get("consumers") or []}
        lag = mine.get("lag")
        return GroupState(lag=int(lag) if lag is not None else 0, pending=int(mine["pending"]), per_consumer=per)

    def pending_ids(self, stream: str, group: str) -> dict[str, tuple[str, int]]:
        rows = self._do("XPENDING", self.client.xpending_range, stream, group, min="-", max="+", count=1_000_000)
        return {_text(r["message_id"]): (_text(r["consumer"]), int(r["times_delivered"])) for r in rows}

    def delete(self, *streams: str) -> None:
        if streams:
            self._do("DEL", self.client.delete, *streams)

    def close(self) -> None:
        self.client.close()


def _fields(raw: dict[Any, Any]) -> dict[str, bytes]:
    return {_text(k): v for k, v in raw.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRedis:
    """A redis-server on 127.0.0.1 for one run (or one test): start, restart (kill -9 and start again on
    the same port and data), stop. Its append-only file is fsynced on every write."""

    def __init__(self, executable: str = "redis-server") -> None:
        found = shutil.which(executable)
        if found is None:
            raise BrokerError(f"{executable} not found on PATH: install it (apt-get install redis-server) or give "
                              f"a broker address (--broker redis://HOST:PORT)")
        self.executable = found
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="odperf-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def address(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return Path(self._dir.name) / "redis.log"

    def __enter__(self) -> "LocalRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def start(self) -> "LocalRedis":
        self.proc = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir.name,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
             "--logfile", str(self.log_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_WAIT_S
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise BrokerError(f"redis-server on 127.0.0.1:{self.port} exited at start: {self._log_tail()}")
                try:
                    if probe.ping():
                        return self
                except (RedisConnectionError, RedisTimeoutError, ResponseError):
                    pass  # still loading its data
                if time.monotonic() > deadline:
                    self.stop()
                    raise BrokerError(f"redis-server on 127.0.0.1:{self.port} did not answer within "
                                      f"{START_WAIT_S:g} s: {self._log_tail()}")
                time.sleep(0.05)
        finally:
            probe.close()

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed beyond what the append-only file already holds."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self, down_s: float = 0.0) -> None:
        """Kill the server, stay down ``down_s`` seconds, start it again on the same port and data."""
        self.kill()
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        self._dir.cleanup()

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "empty log"
