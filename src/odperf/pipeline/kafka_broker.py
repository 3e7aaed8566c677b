"""Kafka as the broker (``kafka://host:port[,host:port]``), through confluent-kafka: the paper's broker.

CONFIGURED, NOT TESTED: no Kafka broker can run here (Kafka is in neither apt nor PyPI), so no test
exercises this module; it is written against confluent-kafka's documented API for people who have one.

Mapping onto the Broker interface: a stream is a topic created with ``PARTITIONS`` partitions (Kafka
shares a topic among a group's consumers by partition: more instances than partitions leaves some idle);
a group is a consumer group with auto-commit off; acknowledging commits the entry's offset. Taking over a
dead consumer's entries is Kafka's rebalance: after ``session.timeout.ms`` its partitions go to another
consumer, which reads again from the last committed offset (``claim_stale`` has nothing to do, and a
re-read entry's delivery count is not known: 1). Fields travel as headers, the one bytes field as the value.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from odperf.pipeline.broker import Broker, BrokerError, BrokerUnavailable, Entry, GroupState

PARTITIONS = 16
BODY = "odperf-body"


def _topic(stream: str) -> str:
    return stream.replace(":", "_")


class KafkaBroker(Broker):
    def __init__(self, address: str, retry_s: float = 20.0) -> None:
        try:
            from confluent_kafka import Producer
            from confluent_kafka.admin import AdminClient
        except ImportError:
            raise BrokerError(f"broker {address}: Kafka needs confluent-kafka: pip install 'odperf[kafka]'") from None
        self.address, self.retry_s = address, retry_s
        self.servers = urlsplit(address).netloc
        self.admin = AdminClient({"bootstrap.servers": self.servers})
        try:
            self.admin.list_topics(timeout=5)
        except Exception as exc:  # noqa: BLE001  KafkaException: nobody there
            raise BrokerError(f"broker {address}: nobody answers ({exc}); start Kafka there, or give no broker "
                              f"address and odperf starts a local redis-server") from None
        self.producer = Producer({"bootstrap.servers": self.servers, "enable.idempotence": True})
        self._consumers: dict[tuple[str, str, str], Any] = {}
        self._held: dict[str, Any] = {}

    def ensure_group(self, stream: str, group: str, redeliver_after_s: float = 10.0) -> None:
        from confluent_kafka.admin import NewTopic

        futures = self.admin.create_topics([NewTopic(_topic(stream), num_partitions=PARTITIONS, replication_factor=1)])
        for future in futures.values():
            try:
                future.result(timeout=self.retry_s)
            except Exception as exc:  # noqa: BLE001
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise BrokerUnavailable(f"create topic on {self.address}: {exc}") from exc

    def publish(self, stream: str, fields: dict[str, Any]) -> str:
        headers, body, done = [], b"", {}
        for key, value in fields.items():
            if isinstance(value, bytes):
                headers.append((BODY, key.encode()))
                body = value
            else:
                headers.append((key, str(value).encode()))

        def delivered(err: Any, msg: Any) -> None:
            done["err"], done["msg"] = err, msg
        self.producer.produce(_topic(stream), value=body, headers=headers, on_delivery=delivered)
        deadline = time.monotonic() + self.retry_s
        while "err" not in done and time.monotonic() < deadline:
            self.producer.poll(0.1)
        if done.get("err") is not None or "msg" not in done:
            raise BrokerUnavailable(f"publish on {self.address}: {done.get('err') or 'no delivery report'}")
        return f"{done['msg'].partition()}:{done['msg'].offset()}"

    def _consumer(self, stream: str, group: str, consumer: str) -> Any:
        key = (stream, group, consumer)
        if key not in self._consumers:
            from confluent_kafka import Consumer

            c = Consumer({"bootstrap.servers": self.servers, "group.id": group, "client.id": consumer,
                          "enable.auto.commit": False, "auto.offset.reset": "earliest"})
            c.subscribe([_topic(stream)])
            self._consumers[key] = c
        return self._consumers[key]

    def read(self, stream: str, group: str, consumer: str, count: int, block_s: float) -> list[Entry]:
        out = []
        for msg in self._consumer(stream, group, consumer).consume(num_messages=count, timeout=block_s):
            if msg.error():
                continue
            fields: dict[str, bytes] = {}
            for key, value in msg.headers() or []:
                if key == BODY:
                    fields[value.decode()] = msg.value()
                else:
                    fields[key] = value
            entry_id = f"{msg.partition()}:{msg.offset()}"
            self._held[entry_id] = (msg, self._consumers[(stream, group, consumer)])
            out.append(Entry(entry_id, fields, 1))
        return out

    def ack(self, stream: str, group: str, entry_id: str) -> None:
        held = self._held.pop(entry_id, None)
        if held is not None:
            msg, consumer = held
            consumer.commit(message=msg, asynchronous=False)

    def claim_stale(self, stream: str, group: str, consumer: str, idle_s: float, count: int) -> list[Entry]:
        return []  # Kafka's rebalance hands a dead consumer's partitions over (see the module's docstring)

    def state(self, stream: str, group: str) -> GroupState:
        from confluent_kafka import Consumer, TopicPartition

        probe = Consumer({"bootstrap.servers": self.servers, "group.id": group, "enable.auto.commit": False})
        try:
            parts = [TopicPartition(_topic(stream), p) for p in range(PARTITIONS)]
            lag = 0
            for tp in probe.committed(parts, timeout=5):
                low, high = probe.get_watermark_offsets(tp, timeout=5)
                lag += high - (tp.offset if tp.offset >= 0 else low)
        finally:
            probe.close()
        return GroupState(lag=lag, pending=0)  # Kafka has no per-entry pending list: in flight counts as lag

    def pending_ids(self, stream: str, group: str) -> dict[str, tuple[str, int]]:
        return {}

    def delete(self, *streams: str) -> None:
        if streams:
            for future in self.admin.delete_topics([_topic(s) for s in streams]).values():
                try:
                    future.result(timeout=10)
                except Exception:  # noqa: BLE001
                    pass

    def close(self) -> None:
        self.producer.flush(5)
        for consumer in self._consumers.values():
            consumer.close()
