"""``odperf pipeline``: cameras -> broker -> detector instances -> collector, with its report.

Writes under ``--out``: ``pipeline.json`` (settings, every image, instances, backlog, faults, summary,
search, instances per device, the stream comparison), ``pipeline.md`` (tables) and ``pipeline.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from odperf.errors import OdperfError
from odperf.pipeline.settings import ARRIVALS, PipelineSettings
from odperf.pipeline.codec import ENCODINGS


def settings_from(args: argparse.Namespace) -> PipelineSettings:
    return PipelineSettings(
        model=args.model, batch_size=args.batch_size, backend=args.backend, device=args.device,
        model_dir=args.model_dir, dataset_root=args.dataset, instances=args.instances,
        devices=tuple(d.strip() for d in (args.devices or "").split(",") if d.strip()),
        memory_limit_mb=args.memory_limit_mb, cameras=args.cameras, cameras_per_line=args.cameras_per_line,
        shots=args.shots, cars=args.cars, car_interval_s=args.car_interval, arrivals=args.arrivals,
        deadline_s=args.deadline, car_deadline_s=args.car_deadline, images=args.images, encoding=args.encoding,
        seed=args.seed, claim_idle_s=args.claim_idle, drain_s=args.drain, kill_instance_at_s=args.kill_instance_at,
        restart_broker_at_s=args.restart_broker_at, broker_down_s=args.broker_down)


def cmd_pipeline(args: argparse.Namespace) -> int:
    from odperf.pipeline.broker import check_address
    from odperf.pipeline.figures import markdown, plot, summarize
    from odperf.pipeline.run import run_pipeline
    from odperf.util.atomic import check_folder

    if args.compare_stream and not args.search_cameras:
        raise OdperfError("--compare-stream compares the cameras the search held with the stream pass's peak: "
                          "give --search-cameras MAX with it")
    for flag, value in (("--search-cameras", args.search_cameras), ("--instances-per-device", args.instances_per_device)):
        if value is not None and value < 1:
            raise OdperfError(f"{flag} {value}: give 1 or more, or leave it out")
    settings = settings_from(args)
    if args.broker is not None:
        check_address(args.broker)
    out = Path(args.out)
    check_folder(out, "pipeline output folder (--out)", create=True, fix="give --out a writable folder")

    def say(text: str) -> None:
        print(f"odperf pipeline: {text}", file=sys.stderr, flush=True)

    run = run_pipeline(settings, args.broker, say)
    summary = summarize(run)
    record: dict[str, Any] = {"kind": "pipeline", "run": run.to_dict(), "summary": summary.to_dict()}
    text = markdown(run, summary)
    if args.search_cameras:
        from odperf.pipeline.search import search_cameras

        found = search_cameras(settings, args.broker, args.search_cameras, say)
        record["camera_search"] = found.to_dict()
        text += search_markdown(found)
        if args.compare_stream:
            from odperf.pipeline.search import stream_peak

            say("the stream pass's peak for the same model, batch size and line (LoadGen Server)")
            comparison = stream_peak(settings, out / "loadgen", found.cameras, summary.service_s)
            record["stream_comparison"] = comparison.to_dict()
            text += comparison_markdown(comparison, settings)
    if args.instances_per_device:
        from odperf.pipeline.search import device_memory_mb, instances_per_device

        measured = instances_per_device(settings, args.broker, args.instances_per_device,
                                        device_memory_mb(settings, args.device_memory_mb), say)
        record["instances_per_device"] = measured.to_dict()
        text += instances_markdown(measured)
    (out / "pipeline.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    (out / "pipeline.md").write_text(text, encoding="utf-8")
    plot(run, summary, out / "pipeline.png")
    print(text)
    print(f"odperf pipeline: wrote {out / 'pipeline.json'}, {out / 'pipeline.md'}, {out / 'pipeline.png'}")
    return 0 if summary.lost == 0 else 1


def search_markdown(found: Any) -> str:
    from tabulate import tabulate

    rows = [[s.cameras, f"{s.offered_rate:.3g}", "-" if s.achieved_rate is None else f"{s.achieved_rate:.3g}",
             "-" if s.p99_s is None else f"{s.p99_s:.3f}", "yes" if s.holds else "no: " + "; ".join(s.why_not)]
            for s in found.steps]
    return ("\nCamera search (each step a fresh pass):\n\n"
            + tabulate(rows, headers=["cameras", "offered/s", "back/s", "p99 s", "held"], tablefmt="github")
            + f"\n\nMost cameras held: {found.cameras if found.cameras is not None else 'none'}\n")


def comparison_markdown(c: Any, settings: PipelineSettings) -> str:
    peak = "none held" if c.peak_rate is None else f"{c.peak_rate:.3g} images/s"
    ratio = "-" if c.ratio is None else f"{c.ratio:.2f}"
    return (f"\nStream pass's peak (LoadGen Server, same model, batch {settings.batch_size}, line and deadline): "
            f"{peak} (throughput {c.implied_rate:.3g} images/s), {c.cameras_per_device} camera(s) per device; "
            f"the pipeline held {c.pipeline_cameras} with {settings.instances} instance(s): ratio {ratio}. "
            + ("" if c.service_s is None else
               f"The pipeline's own time per image in an instance ({c.service_s:.3f} s: decode, inference, result; "
               f"the stream's is {1 / c.implied_rate:.3f} s) allows at most {c.service_cameras} camera(s) with every "
               f"instance busy.") + "\n")


def instances_markdown(m: Any) -> str:
    from tabulate import tabulate

    rows = [[s.instances, s.up, ", ".join(s.outcomes), " / ".join("-" if p is None else f"{p:.0f}" for p in s.peak_mb),
             "-" if s.summed_peak_mb is None else f"{s.summed_peak_mb:.0f}",
             "-" if s.achieved_rate is None else f"{s.achieved_rate:.3g}", "yes" if s.holds else "no"]
            for s in m.steps]
    device = "-" if m.device_mb is None else f"{m.device_mb:.0f}"
    return ("\nInstances per device (1..k instances sharing the device, each pass at the same cameras):\n\n"
            + tabulate(rows, headers=["instances", "up", "outcomes", "peak MB each", "sum MB", "back/s", "held"],
                       tablefmt="github")
            + f"\n\nMeasured: {m.measured} of the {m.asked} instance(s) tried ran together; memory arithmetic floor({device} MB / one instance's "
              f"peak): {m.arithmetic if m.arithmetic is not None else '-'}.\n")


def register(sub: argparse._SubParsersAction) -> None:
    d = PipelineSettings()
    p = sub.add_parser("pipeline", help="cameras through a real broker to detector instances: latency, capacity")
    p.add_argument("--broker", default=None, metavar="URL",
                   help="redis://HOST:PORT[/DB] (default: a local redis-server on 127.0.0.1 for the run), "
                        "nats://HOST:PORT (JetStream), kafka://HOST:PORT")
    p.add_argument("--model", default=d.model)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--backend", default=d.backend)
    p.add_argument("--device", default=d.device, help="cpu or gpu:N; every instance shares it")
    p.add_argument("--devices", default=None, metavar="DEV[,DEV...]",
                   help="spread the instances over these devices in turn (e.g. gpu:0,gpu:1), instead of --device")
    p.add_argument("--model-dir", default=None)
    p.add_argument("--dataset", default=None, help="COCO-format root (default: the embedded synthetic dataset)")
    p.add_argument("--instances", type=int, default=d.instances, help="detector instances (consumers of one group)")
    p.add_argument("--memory-limit-mb", type=int, default=None, help="cap each instance (an emulated slice)")
    p.add_argument("--cameras", type=int, default=d.cameras)
    p.add_argument("--cameras-per-line", type=int, default=d.cameras_per_line)
    p.add_argument("--shots", type=int, default=d.shots, help="images per camera per car")
    p.add_argument("--cars", type=int, default=d.cars, help="cars per line")
    p.add_argument("--car-interval", type=float, default=d.car_interval_s, metavar="S")
    p.add_argument("--arrivals", choices=ARRIVALS, default=d.arrivals)
    p.add_argument("--deadline", type=float, default=d.deadline_s, metavar="S", help="per image")
    p.add_argument("--car-deadline", type=float, default=None, metavar="S",
                   help="first image to last result (default: car interval + image deadline)")
    p.add_argument("--images", type=int, default=d.images, help="distinct camera images the cameras cycle through")
    p.add_argument("--encoding", choices=ENCODINGS, default=d.encoding)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--claim-idle", type=float, default=d.claim_idle_s, metavar="S",
                   help="an image unacknowledged this long is taken over by another instance")
    p.add_argument("--drain", type=float, default=None, metavar="S", help="wait for results after the last capture")
    p.add_argument("--kill-instance-at", type=float, default=None, metavar="S", help="fault: SIGKILL instance 0")
    p.add_argument("--restart-broker-at", type=float, default=None, metavar="S",
                   help="fault: kill -9 the local redis-server and start it again")
    p.add_argument("--broker-down", type=float, default=d.broker_down_s, metavar="S")
    p.add_argument("--search-cameras", type=int, default=None, metavar="MAX",
                   help="also find the most cameras held (doubling, then bisection; a pass per step)")
    p.add_argument("--compare-stream", action="store_true",
                   help="with --search-cameras: the stream pass's peak for the same model and batch size")
    p.add_argument("--instances-per-device", type=int, default=None, metavar="K",
                   help="also run 1..K instances sharing the device, against the memory arithmetic")
    p.add_argument("--device-memory-mb", type=float, default=None, help="the device's memory for the arithmetic")
    p.add_argument("--out", default="reports/pipeline", help="folder for pipeline.json, .md, .png")
    p.set_defaults(func=cmd_pipeline)
