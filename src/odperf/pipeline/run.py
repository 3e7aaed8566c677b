"""One pipeline pass: broker up, instances started and warm, cameras publishing, results collected, faults.

Order: every input is checked and the broker reached before any worker starts; the instances are started
one after another (deployment figures undisturbed by each other) and begin consuming; then the cameras
publish on their schedule while the collector reads results and a sampler records the backlog. After the
last capture the run waits for every published image to come back (at most ``drain_after_s``), stops the
instances (their counters and memory), and accounts for every image: detected, came back with an error,
or lost with the reason the broker's own state gives (still queued, or pending at a named instance).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from odperf.engine.client import WorkerFailed
from odperf.engine.request import MeasureRequest
from odperf.errors import OdperfError, WorkloadError
from odperf.measure.scorers import DEFAULT_SCORER
from odperf.pipeline.broker import BrokerUnavailable, check_address
from odperf.pipeline.brokers import open_broker
from odperf.pipeline.codec import encode_image
from odperf.pipeline.collector import Collector
from odperf.pipeline.instance import InstanceConfig, InstanceReport, InstanceSession
from odperf.pipeline.producer import Producers, schedule
from odperf.pipeline.settings import PipelineSettings

DETECTORS, COLLECTORS = "detectors", "collector"
BACKLOG_PERIOD_S = 0.25


@dataclass
class ImageOutcome:
    """Every published image, once: its stamps (wall clock, s) and status: detected, error, or lost (why)."""

    seq: int
    line: int
    car: int
    camera: int
    t_capture: float
    status: str
    t_published: float | None = None
    instance: str | None = None
    deliveries: int = 0
    t_received: float | None = None
    t_decoded: float | None = None
    infer_s: float | None = None
    t_done: float | None = None
    t_collected: float | None = None
    reason: str | None = None


@dataclass
class PipelineRun:
    """What a pass did: settings, broker, instances, every image, backlog timeline, faults, mAP."""

    settings: PipelineSettings
    broker: str
    local_broker: bool
    t0: float
    wall_s: float = 0.0
    images: list[ImageOutcome] = field(default_factory=list)
    instances: list[InstanceReport] = field(default_factory=list)
    backlog: list[list[float]] = field(default_factory=list)  # [t_s, lag, pending]
    faults: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    collector_outages: int = 0
    accuracy: dict[str, Any] | None = None
    accuracy_error: str | None = None
    # each instance's worker Measurement (deployment, memory), for a results record; not in to_dict
    measurements: list[Any] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(replace(self, measurements=[]))
        data.pop("measurements")
        data["settings"] = self.settings.to_dict()
        return data


def measure_request(settings: PipelineSettings, instance: int = 0) -> MeasureRequest:
    """The worker's request for one instance: the pass's model on its device, no timed images of its own."""
    return MeasureRequest(model=settings.model, batch_size=settings.batch_size, images=settings.images,
                          device=settings.instance_device(instance), backend=settings.backend, model_dir=settings.model_dir,
                          dataset_root=settings.dataset_root, seed=settings.seed, grid=settings.grid,
                          memory_limit_mb=settings.memory_limit_mb, timeout_s=settings.start_timeout_s)


def check_model(settings: PipelineSettings) -> None:
    """A registry model that is unknown or not on disk is the user's one line before any broker or worker
    starts (a path to a model is checked by the worker's runtime when it loads)."""
    from odperf.zoo.registry import get, looks_like_path, require_local

    if not looks_like_path(settings.model):
        require_local(get(settings.model), settings.model_dir)


def run_pipeline(settings: PipelineSettings, broker: str | None = None,
                 say: Callable[[str], None] = lambda _: None) -> PipelineRun:
    """One pass; a broker address (``redis://...``) or None for a local redis-server started for the run."""
    from odperf.engine.worker import open_camera_set

    if broker is not None:
        check_address(broker)
        if settings.restart_broker_at_s is not None:
            raise WorkloadError("--restart-broker-at restarts the broker odperf starts itself: give no --broker")
    requests = [measure_request(settings, i) for i in range(settings.instances)]  # every device checked now
    request = requests[0]
    from odperf.engine.client import check_dataset

    check_dataset(request)
    check_model(settings)
    local = None
    if broker is None:
        from odperf.pipeline.redis_broker import LocalRedis

        local = LocalRedis().start()
        broker = local.address
    try:
        client = open_broker(broker, settings.retry_s)
        camera_set = open_camera_set(request, request.camera_grid)
        encoded = [encode_image(camera_set.image(i), settings.encoding) for i in range(settings.images)]
        run = PipelineRun(settings=settings, broker=broker, local_broker=local is not None, t0=0.0)
        try:
            collector = _pass(run, settings, client, requests, encoded, local, say)
            try:
                run.accuracy = collector.score(camera_set, DEFAULT_SCORER)
            except OdperfError as exc:  # detections that cannot be scored: figures stand, the record says why
                run.accuracy_error = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()
        return run
    finally:
        if local is not None:
            local.cleanup()


def _pass(run: PipelineRun, s: PipelineSettings, client: Any, requests: list[MeasureRequest], encoded: list[bytes],
          local: Any, say: Callable[[str], None]) -> Collector:
    tag = f"odperf:{uuid.uuid4().hex[:10]}"
    images_stream, results_stream = f"{tag}:images", f"{tag}:results"
    client.ensure_group(images_stream, DETECTORS, s.claim_idle_s)
    client.ensure_group(results_stream, COLLECTORS)
    lines = schedule(s)
    camera_of = {shot.seq: shot.camera_index for shots in lines for shot in shots}
    sessions: list[InstanceSession] = []
    killed: set[int] = set()
    try:
        for i in range(s.instances):
            say(f"starting instance {i + 1}/{s.instances}: {s.model} batch {s.batch_size} on {s.instance_device(i)}")
            session = InstanceSession(requests[i])
            sessions.append(session)
            session.start()
            session.begin(InstanceConfig(address=run.broker, images_stream=images_stream,
                                         results_stream=results_stream, group=DETECTORS, name=f"instance-{i}",
                                         claim_idle_s=s.claim_idle_s, retry_s=s.retry_s))
        collector = Collector(open_broker(run.broker, s.retry_s), results_stream, COLLECTORS,
                              requests[0].camera_grid, s.batch_size, s.model, camera_of).start()
        producers = Producers(lambda: open_broker(run.broker, s.retry_s), images_stream, encoded, lines)
        run.t0 = time.time() + 0.2
        stop = threading.Event()
        sampler = threading.Thread(target=_sample_backlog, args=(run, images_stream, stop), daemon=True)
        faults = _faults(run, s, sessions, killed, local)
        say(f"publishing {s.published} images from {s.cameras} cameras ({s.rate:.3g} images/s) to {run.broker}")
        producers.start(run.t0)
        sampler.start()
        for f in faults:
            f.start()
        producers.join()
        sent = sum(1 for p in producers.published if p.entry_id)
        deadline = time.time() + s.drain_after_s
        while collector.count() < sent and time.time() < deadline:
            time.sleep(0.1)
        for f in faults:
            f.join()
        stop.set()
        sampler.join()
        run.wall_s = time.time() - run.t0
        for i, session in enumerate(sessions):
            report = session.end(s.start_timeout_s)
            if i in killed:
                report.outcome, report.error = "killed", "killed by the run (fault injected)"
            run.instances.append(report)
            run.measurements.append(session.measurement)
        collector.stop()
        collector.broker.close()
        try:  # the backlog once every instance has stopped: what is left in the broker
            state = client.state(images_stream, DETECTORS)
            run.backlog.append([round(time.time() - run.t0, 3), state.lag, state.pending])
        except BrokerUnavailable:
            pass
        run.duplicates, run.collector_outages = collector.duplicates, collector.broker_outages
        _account(run, producers, collector, client, images_stream)
        try:
            client.delete(images_stream, results_stream)
        except BrokerUnavailable:
            pass
        return collector
    except WorkerFailed as failure:
        raise WorkloadError(f"instance failed to start: {failure.outcome}: {failure.message}") from None
    finally:
        for session in sessions:
            session.close()


def _faults(run: PipelineRun, s: PipelineSettings, sessions: list[InstanceSession], killed: set[int],
            local: Any) -> list[threading.Thread]:
    out = []

    def later(at_s: float, what: Callable[[], str], name: str) -> threading.Thread:
        def go() -> None:
            time.sleep(max(0.0, run.t0 + at_s - time.time()))
            t = time.time() - run.t0
            note = what()
            run.faults.append({"fault": name, "at_s": round(t, 3), "note": note})
        return threading.Thread(target=go, daemon=True)

    if s.kill_instance_at_s is not None:
        def kill() -> str:
            sessions[0].kill()
            killed.add(0)
            return "instance-0 SIGKILLed with its process group"
        out.append(later(s.kill_instance_at_s, kill, "kill instance"))
    if s.restart_broker_at_s is not None and local is not None:
        def restart() -> str:
            local.restart(s.broker_down_s)
            return f"redis-server killed (-9), down {s.broker_down_s:g} s, started again on the same data"
        out.append(later(s.restart_broker_at_s, restart, "restart broker"))
    return out


def _sample_backlog(run: PipelineRun, stream: str, stop: threading.Event) -> None:
    broker = open_broker(run.broker, 1.0)
    try:
        while not stop.wait(BACKLOG_PERIOD_S):
            try:
                state = broker.state(stream, DETECTORS)
                run.backlog.append([round(time.time() - run.t0, 3), state.lag, state.pending])
            except BrokerUnavailable:
                pass  # a gap in the timeline while the broker is down
    finally:
        broker.close()


def _account(run: PipelineRun, producers: Producers, collector: Collector, client: Any, stream: str) -> None:
    try:
        pending = client.pending_ids(stream, DETECTORS)
        state = client.state(stream, DETECTORS)
    except BrokerUnavailable as exc:
        pending, why = {}, f"broker unreachable at the end ({exc})"
    else:
        if state.pending and not pending:  # a broker that does not say who holds what (JetStream)
            why = (f"not back within the drain time: {state.lag} image(s) still queued and {state.pending} "
                   f"delivered but unacknowledged in the broker")
        elif state.lag:
            why = f"not back within the drain time: {state.lag} image(s) still queued in the broker at the end"
        else:
            why = "acknowledged by an instance, but no readable result reached the collector"
            if collector.unreadable:
                why += f" ({len(collector.unreadable)} unreadable, first: {collector.unreadable[0]})"
    for p in sorted(producers.published, key=lambda p: p.shot.seq):
        sh = p.shot
        out = ImageOutcome(seq=sh.seq, line=sh.line, car=sh.car, camera=sh.camera, t_capture=p.t_capture,
                           t_published=p.t_published, status="lost")
        result = collector.results.get(sh.seq)
        if p.error:
            out.reason = p.error
        elif result is not None:
            out.status = "error" if result.error else "detected"
            out.reason = result.error or None
            out.instance, out.deliveries = result.instance, result.deliveries
            out.t_received, out.t_decoded, out.infer_s = result.t_received, result.t_decoded, result.infer_s
            out.t_done, out.t_collected = result.t_done, result.t_collected
        elif p.entry_id in pending:
            holder, n = pending[p.entry_id]
            out.reason = f"pending at {holder} (delivered {n} times), not back within the drain time"
        else:
            out.reason = why
        run.images.append(out)
