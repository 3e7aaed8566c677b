"""A detector instance: today's worker process (``odperf.engine``) as one consumer of the broker's group.

The parent starts the worker as for timing (``WorkerSession``: same runtime, model load, warm-up, memory
sampled from outside), then hands it a ``pipeline`` command; the worker runs ``serve_instance`` until the
parent sends ``stop``. Each camera image: read from the images stream (or, every ``claim_every_s``, taken
over from a consumer that held it unacknowledged for ``claim_idle_s``: XAUTOCLAIM), decoded, timed through
the worker's own timed region (cut into tiles, every batch through the model, detections on the host), its
detections published to the results stream, then acknowledged. Acknowledging last means an instance
killed anywhere before it leaves the image pending, for another instance to claim; one killed between
publishing and acknowledging leaves a duplicate result, which the collector counts and drops.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from odperf.engine.client import WorkerFailed, WorkerSession

READ_BLOCK_S = 0.2
HANDLER = "odperf.pipeline.instance:pipeline_command"  # the worker imports it by this name (engine.portable)


@dataclass
class InstanceConfig:
    """What one instance needs of the run: the broker, its streams, its group and its own name."""

    address: str
    images_stream: str
    results_stream: str
    group: str
    name: str
    claim_idle_s: float = 10.0
    claim_every_s: float = 1.0
    retry_s: float = 20.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class InstanceReport:
    """One instance's run: what it did, the broker trouble it met, and the worker's memory and deployment."""

    name: str
    pid: int | None
    images: int = 0
    claimed: int = 0  # images taken over from another consumer (XAUTOCLAIM)
    errors: int = 0  # images it could not detect on (a broken file): reported in the results, not lost
    infer_s: float = 0.0  # worker-timed seconds in the timed region, summed
    broker_outages: int = 0  # operations that failed after their retries (the broker gone for longer)
    last_broker_error: str | None = None
    outcome: str = "ok"  # ok, killed, or the worker's failure outcome (oom, crash, timeout)
    error: str | None = None
    peak_memory_mb: float | None = None
    memory_probe: str | None = None
    deploy_s: float | None = None
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- in the worker ------------------------------------------------------------------------------------
@dataclass
class _Counters:
    images: int = 0
    claimed: int = 0
    errors: int = 0
    infer_s: float = 0.0
    broker_outages: int = 0
    last_broker_error: str | None = None
    started: list[float] = field(default_factory=list)


def pipeline_command(worker: Any, msg: dict[str, Any]) -> dict[str, Any]:
    """The worker's ``pipeline`` command (``engine.portable`` imports it by the name the instance sends)."""
    return serve_instance(worker, msg["config"])


def serve_instance(worker: Any, config: dict[str, Any]) -> dict[str, Any]:
    """The instance's loop inside the worker, until the parent sends ``stop``; returns its counters."""
    from odperf.pipeline.broker import BrokerUnavailable
    from odperf.pipeline.brokers import open_broker

    cfg = InstanceConfig(**config)
    counters = _Counters()
    broker = open_broker(cfg.address, cfg.retry_s)
    next_claim = 0.0
    try:
        while not _stop_asked(worker.channel):
            try:
                entries = []
                if time.monotonic() >= next_claim:
                    entries = broker.claim_stale(cfg.images_stream, cfg.group, cfg.name, cfg.claim_idle_s, 1)
                    counters.claimed += len(entries)
                    next_claim = time.monotonic() + cfg.claim_every_s
                if not entries:
                    entries = broker.read(cfg.images_stream, cfg.group, cfg.name, 1, READ_BLOCK_S)
                for entry in entries:
                    _detect(worker, broker, cfg, entry, counters)
            except BrokerUnavailable as exc:
                counters.broker_outages += 1
                counters.last_broker_error = str(exc).splitlines()[0]
                time.sleep(READ_BLOCK_S)
    finally:
        broker.close()
    out = asdict(counters)
    out.pop("started")
    return {"event": "piped", **out}


def _detect(worker: Any, broker: Any, cfg: InstanceConfig, entry: Any, counters: _Counters) -> None:
    """One camera image: decode, the timed region, publish the detections, acknowledge."""
    from odperf.pipeline.codec import decode_image, pack_detections

    t_received = time.time()
    payload, error, seconds = b"", "", 0.0
    try:
        image = decode_image(entry.fields["data"])
        t_decoded = time.time()
        seconds, outputs = worker.time_pixels(image)
        payload = pack_detections(outputs)
    except Exception as exc:  # noqa: BLE001  a broken image is reported with its result, never dropped
        from odperf.errors import OdperfError
        from PIL import UnidentifiedImageError

        if not isinstance(exc, (OdperfError, UnidentifiedImageError, OSError, ValueError, KeyError)):
            raise
        t_decoded, error = time.time(), f"{type(exc).__name__}: {exc}"
        counters.errors += 1
    counters.images += 1
    counters.infer_s += seconds
    broker.publish(cfg.results_stream, {
        "entry": entry.id, "seq": entry.fields.get("seq", b"-1").decode(), "instance": cfg.name,
        "deliveries": entry.deliveries, "t_received": repr(t_received), "t_decoded": repr(t_decoded),
        "infer_s": repr(seconds), "t_done": repr(time.time()), "payload": payload, "error": error,
    })
    broker.ack(cfg.images_stream, cfg.group, entry.id)


def _stop_asked(channel: Any) -> bool:
    if not channel.pending():
        return False
    return channel.receive(timeout=5.0).get("cmd") in ("stop", "quit")


# --- in the parent ------------------------------------------------------------------------------------
class InstanceSession(WorkerSession):
    """A WorkerSession whose worker serves as a pipeline instance between ``begin`` and ``end``."""

    config: InstanceConfig | None = None

    def begin(self, config: InstanceConfig) -> None:
        """Start consuming (the worker is started and warm: ``start()`` first)."""
        self.config = config
        self._step = f"pipeline instance {config.name}"
        assert self.channel is not None
        self.channel.send({"cmd": "pipeline", "handler": HANDLER, "config": config.to_dict()})

    def kill(self) -> None:
        """SIGKILL the worker's process group, mid-image or not (a fault the run injects)."""
        self._kill()

    def end(self, timeout_s: float) -> InstanceReport:
        """Ask the instance to stop; its counters and memory. A killed or failed worker is reported, never raised."""
        name = self.config.name if self.config else "?"
        report = InstanceReport(name=name, pid=self.pid, device=self.request.device)
        if self.measurement.deploy is not None:
            report.deploy_s = self.measurement.deploy.total_s
        try:
            reply = self._call({"cmd": "stop"}, "piped", timeout_s)
            for key in ("images", "claimed", "errors", "infer_s", "broker_outages", "last_broker_error"):
                setattr(report, key, reply[key])
        except WorkerFailed as failure:
            report.outcome, report.error = failure.outcome, failure.message
        self.close()
        memory = self.measurement.memory
        if memory is not None:
            report.peak_memory_mb, report.memory_probe = memory.peak_mb, memory.probe
        return report
