"""NATS JetStream as the broker (``nats://host:port``), through nats-py, and a local nats-server for tests.

Mapping onto the Broker interface: a stream is a JetStream stream of one subject (its name with ``:`` made
``_``), a consumer group is a durable pull consumer with explicit acks that every instance fetches from.
Taking over a dead consumer's entries is JetStream's own redelivery: an entry unacknowledged for the
consumer's ack wait (``ensure_group``'s ``redeliver_after_s``, the run's claim idle time) is delivered
again, with its delivery count, to whoever fetches next; ``claim_stale`` has nothing to do. JetStream
does not list which consumer holds an unacknowledged entry, so ``pending_ids`` is empty and a lost
image's reason gives the group's counts instead.

A message's fields travel as headers, its one bytes field (the image, the detections) as the body. The
server's max_payload must hold an encoded camera image (several MB at the paper's size; the default is
1 MB): ``LocalNats`` sets 16 MB.

nats-py is asyncio-only; the class runs its own event loop in a thread and waits on each call.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from odperf.pipeline.broker import Broker, BrokerError, BrokerUnavailable, Entry, GroupState

BODY = "Odperf-Body"  # header naming the field carried as the body
MAX_PAYLOAD_MB = 16


def _name(stream: str) -> str:
    return stream.replace(":", "_").replace(".", "_")


class JetStream(Broker):
    def __init__(self, address: str, retry_s: float = 20.0) -> None:
        try:
            import nats
        except ImportError:
            raise BrokerError(f"broker {address}: NATS needs nats-py: pip install 'odperf[nats]'") from None
        self.address, self.retry_s = address, retry_s
        _probe(address)  # nats-py keeps retrying a first connection that nobody answers: ask the port first
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="odperf-nats")
        self._thread.start()
        self._subs: dict[tuple[str, str], Any] = {}
        self._held: dict[str, Any] = {}  # entry id -> message, until acknowledged
        self.last_error: str | None = None

        async def quiet(exc: Exception) -> None:  # reconnect attempts while a server restarts: expected
            self.last_error = f"{type(exc).__name__}: {exc}"

        async def connect() -> Any:
            return await nats.connect(servers=[address], connect_timeout=3, allow_reconnect=True,
                                      max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=quiet)
        try:
            self.nc = self._wait(connect(), 15)
        except Exception as exc:  # noqa: BLE001  nats-py raises several kinds for "nobody there"
            self._stop_loop()
            raise BrokerError(f"broker {address}: nobody answers ({type(exc).__name__}: {exc}); start nats-server "
                              f"-js there, or give no broker address and odperf starts a local redis-server") from None
        self.js = self.nc.jetstream()
        try:
            self._wait(self.js.account_info(), 5)
        except Exception:  # noqa: BLE001
            self.close()
            raise BrokerError(f"broker {address}: nats-server answers without JetStream; start it with -js") from None

    def _wait(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _do(self, what: str, make: Any, timeout: float = 10.0) -> Any:
        """Run ``make()``'s coroutine, retrying while the server is away, for at most ``retry_s``."""
        import nats.errors

        deadline = time.monotonic() + self.retry_s
        while True:
            try:
                return self._wait(make(), timeout)
            except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError, nats.errors.NoRespondersError,
                    nats.errors.ConnectionReconnectingError, nats.errors.StaleConnectionError,
                    asyncio.TimeoutError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(f"{what} on {self.address}: {type(exc).__name__}: {exc}") from exc
                time.sleep(0.2)

    def ensure_group(self, stream: str, group: str, redeliver_after_s: float = 10.0) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, StorageType

        name = _name(stream)

        async def make() -> None:
            try:
                await self.js.stream_info(name)
            except Exception:  # noqa: BLE001  not found
                await self.js.add_stream(name=name, subjects=[name], storage=StorageType.FILE)
            await self.js.add_consumer(name, ConsumerConfig(durable_name=group, ack_policy=AckPolicy.EXPLICIT,
                                                            ack_wait=redeliver_after_s, max_deliver=-1))
        self._do("add stream and consumer", make)

    def publish(self, stream: str, fields: dict[str, Any]) -> str:
        headers, body = {}, b""
        for key, value in fields.items():
            if isinstance(value, bytes):
                if BODY in headers:
                    raise ValueError(f"a JetStream message carries one bytes field as its body: {headers[BODY]}, {key}")
                headers[BODY], body = key, value
            else:
                headers[key] = str(value)
        ack = self._do("publish", lambda: self.js.publish(_name(stream), body, headers=headers))
        return str(ack.seq)

    def _sub(self, stream: str, group: str) -> Any:
        key = (stream, group)
        if key not in self._subs:
            self._subs[key] = self._do("bind", lambda: self.js.pull_subscribe_bind(durable=group, stream=_name(stream)))
        return self._subs[key]

    def read(self, stream: str, group: str, consumer: str, count: int, block_s: float) -> list[Entry]:
        import nats.errors

        sub = self._sub(stream, group)

        async def fetch() -> list[Any]:
            try:
                return await sub.fetch(count, timeout=block_s)
            except nats.errors.TimeoutError:
                return []
        out = []
        for msg in self._do("fetch", fetch, timeout=block_s + 10):
            entry_id = f"{msg.metadata.sequence.stream}"
            headers = dict(msg.headers or {})
            fields: dict[str, bytes] = {k: v.encode() for k, v in headers.items() if k != BODY}
            if BODY in headers:
                fields[headers[BODY]] = msg.data
            self._held[entry_id] = msg
            out.append(Entry(entry_id, fields, int(msg.metadata.num_delivered)))
        return out

    def ack(self, stream: str, group: str, entry_id: str) -> None:
        msg = self._held.pop(entry_id, None)
        if msg is not None:
            self._do("ack", msg.ack_sync)

    def claim_stale(self, stream: str, group: str, consumer: str, idle_s: float, count: int) -> list[Entry]:
        return []  # JetStream redelivers after the consumer's ack wait by itself (see the module's docstring)

    def state(self, stream: str, group: str) -> GroupState:
        info = self._do("consumer info", lambda: self.js.consumer_info(_name(stream), group))
        return GroupState(lag=int(info.num_pending or 0), pending=int(info.num_ack_pending or 0))

    def pending_ids(self, stream: str, group: str) -> dict[str, tuple[str, int]]:
        return {}

    def delete(self, *streams: str) -> None:
        for stream in streams:
            try:
                self._do("delete stream", lambda s=stream: self.js.delete_stream(_name(s)))
            except Exception:  # noqa: BLE001  already gone
                pass

    def close(self) -> None:
        try:
            self._wait(self.nc.close(), 5)
        except Exception:  # noqa: BLE001
            pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        async def cancel_rest() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
        try:
            self._wait(cancel_rest(), 5)
        except Exception:  # noqa: BLE001
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def _probe(address: str) -> None:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address)
    try:
        socket.create_connection((parts.hostname, parts.port or 4222), timeout=3).close()
    except OSError as exc:
        raise BrokerError(f"broker {address}: nobody answers ({exc}); start nats-server -js there, or give no "
                          f"broker address and odperf starts a local redis-server") from None


class LocalNats:
    """A nats-server with JetStream on 127.0.0.1 (a free port, file storage in a private folder)."""

    def __init__(self, executable: str = "nats-server") -> None:
        from odperf.pipeline.redis_broker import free_port

        found = shutil.which(executable)
        if found is None:
            raise BrokerError(f"{executable} not found on PATH: install it (apt-get install nats-server) or give "
                              f"a broker address (--broker nats://HOST:PORT)")
        self.executable, self.port = found, free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="odperf-nats-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def __enter__(self) -> "LocalNats":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._dir.cleanup()

    def start(self) -> "LocalNats":
        import socket

        conf = Path(self._dir.name) / "nats.conf"
        conf.write_text(f"max_payload: {MAX_PAYLOAD_MB}MB\n", encoding="utf-8")
        self.proc = subprocess.Popen([self.executable, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                                      "-sd", self._dir.name, "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"nats-server on 127.0.0.1:{self.port} exited at start (code {self.proc.returncode})")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"nats-server on 127.0.0.1:{self.port} did not answer within 15 s")

    def restart(self, down_s: float = 0.0) -> None:
        """SIGKILL the server, stay down ``down_s`` seconds, start it again on the same port and storage."""
        import os
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        time.sleep(down_s)
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None
