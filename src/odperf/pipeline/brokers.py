"""The brokers odperf speaks, by the scheme of their address: each behind ``pipeline/broker.Broker``, its
client library imported only when its scheme is asked for."""

from __future__ import annotations

from odperf.pipeline.broker import Broker, check_address


def open_broker(address: str, retry_s: float = 20.0) -> Broker:
    """A connected broker for ``address``; BrokerError (one line) when it is malformed or nobody answers.
    ``retry_s`` is how long an operation keeps retrying a broker that went away mid-run (a restart)."""
    scheme = check_address(address)
    if scheme == "redis":
        from odperf.pipeline.redis_broker import RedisStreams

        return RedisStreams(address, retry_s)
    if scheme == "nats":
        from odperf.pipeline.nats_broker import JetStream

        return JetStream(address, retry_s)
    from odperf.pipeline.kafka_broker import KafkaBroker

    return KafkaBroker(address, retry_s)
