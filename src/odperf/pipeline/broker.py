"""The broker behind a small interface: streams of entries, consumer groups, acks, and claiming.

A pipeline needs four things of its broker: publish an entry to a stream; let several consumers of one
group share a stream (each entry delivered to one of them); acknowledge an entry once handled; and hand an
entry a consumer took but never acknowledged (it died) to another consumer. Redis Streams do all four
natively (XADD, XREADGROUP, XACK, XAUTOCLAIM); NATS JetStream does the last by redelivery after its ack
wait; Kafka by re-reading from the last committed offset. ``open_broker`` picks the implementation from
the address's scheme: ``redis://host:port/db``, ``nats://host:port``, ``kafka://host:port[,host:port]``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from odperf.errors import OdperfError

SCHEMES = ("redis", "nats", "kafka")


class BrokerError(OdperfError):
    """A broker address that is wrong, or a broker that is not there (one line: which, and the fix)."""


class BrokerUnavailable(Exception):
    """The broker stopped answering mid-run (its retries spent): the run reports what it could not do."""


@dataclass
class Entry:
    """One stream entry as a consumer received it: its broker id, fields, and how often it was delivered."""

    id: str
    fields: dict[str, bytes]
    deliveries: int = 1  # > 1: taken over from a consumer that never acknowledged it (a retry)


@dataclass
class GroupState:
    """Where a consumer group stands on its stream: entries not yet delivered (``lag``) and delivered but
    not acknowledged (``pending``), with the pending ones per consumer."""

    lag: int
    pending: int
    per_consumer: dict[str, int] = field(default_factory=dict)

    @property
    def backlog(self) -> int:
        return self.lag + self.pending


class Broker(abc.ABC):
    """One connection to a broker; every method may raise BrokerUnavailable once its retries are spent."""

    address: str

    @abc.abstractmethod
    def ensure_group(self, stream: str, group: str, redeliver_after_s: float = 10.0) -> None:
        """Create ``stream`` and its consumer ``group`` (reading from the start) if missing. Brokers that
        redeliver by themselves (JetStream) do so after ``redeliver_after_s`` without an ack."""

    @abc.abstractmethod
    def publish(self, stream: str, fields: dict[str, bytes | str | int | float]) -> str:
        """Append an entry; returns its id."""

    @abc.abstractmethod
    def read(self, stream: str, group: str, consumer: str, count: int, block_s: float) -> list[Entry]:
        """Up to ``count`` entries never delivered before, waiting at most ``block_s`` for one."""

    @abc.abstractmethod
    def ack(self, stream: str, group: str, entry_id: str) -> None:
        """The entry is handled: it leaves the group's pending list."""

    @abc.abstractmethod
    def claim_stale(self, stream: str, group: str, consumer: str, idle_s: float, count: int) -> list[Entry]:
        """Entries another consumer took more than ``idle_s`` ago and never acknowledged, now ``consumer``'s."""

    @abc.abstractmethod
    def state(self, stream: str, group: str) -> GroupState:
        """The group's lag and pending entries (the backlog)."""

    @abc.abstractmethod
    def pending_ids(self, stream: str, group: str) -> dict[str, tuple[str, int]]:
        """Every pending entry: id -> (consumer holding it, deliveries)."""

    @abc.abstractmethod
    def delete(self, *streams: str) -> None:
        """Remove the run's streams (a broker someone else runs keeps no trace of the run)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection."""


def check_address(address: str) -> str:
    """The address's scheme, or one BrokerError line naming the address and the form it should take."""
    parts = urlsplit(address)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise BrokerError(f"broker address {address!r}: give redis://HOST:PORT[/DB], nats://HOST:PORT or "
                          f"kafka://HOST:PORT[,HOST:PORT] (or no address: odperf starts a local redis-server)")
    try:
        parts.port
    except ValueError:
        raise BrokerError(f"broker address {address!r}: the port is not a number 1-65535") from None
    return parts.scheme
