"""``odperf zoo``: list the registry, show one model, fetch zoo tarballs, train an embedded detector.

Nothing here imports TensorFlow except ``info --load`` and ``train``: listing must stay instant. ``train``
sends the PyTorch embedded models (``odperf.zoo.embedded_torch``) to their own trainer.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path

from tabulate import tabulate

from odperf.errors import FetchError, ModelError
from odperf.util.package_data import writable_fixtures
from odperf.zoo.registry import ModelSpec, all_models, fixtures_dir, get, resolve_model_dir, select

TRAIN_MODULE = "odperf.zoo.embedded.train"


def register(subparsers: argparse._SubParsersAction) -> None:
    zoo = subparsers.add_parser("zoo", help="the model registry: list, info, fetch, train",
                                description="The detectors odperf knows: the paper's 22 TF1 zoo models, "
                                            "their TF2 successors and the embedded detectors.")
    sub = zoo.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND")
    zoo.set_defaults(func=lambda args: _help(zoo))

    p = sub.add_parser("list", help="table of every registry model")
    p.add_argument("selectors", nargs="*", metavar="SELECTOR",
                   help="names, meta_archs, mAP groups, families (paper, tf2, embedded) or 'all' (default)")
    p.add_argument("--model-dir", help="folder of extracted zoo tarballs (default: $ODPERF_MODEL_DIR or ~/.cache/odperf/models)")
    p.add_argument("--format", default="simple", help="tabulate table format (e.g. github, plain)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="everything the registry holds about one model")
    p.add_argument("name")
    p.add_argument("--model-dir")
    p.add_argument("--load", action="store_true", help="also load it and report its format and batch mode")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fetch", help="download and unpack zoo tarballs into the model folder")
    p.add_argument("names", nargs="+", metavar="NAME", help="registry names or selectors (e.g. lowest, paper)")
    p.add_argument("--model-dir")
    p.add_argument("--url-base", help="mirror holding the zoo's layout (default: $ODPERF_URL_BASE or the zoo)")
    p.add_argument("--force", action="store_true", help="download again even if present")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("freeze", help="the frozen GraphDef a TensorFlow 1.15 board loads (made once, cached)")
    p.add_argument("name", help="a registry model or a path to a TensorFlow detector")
    p.add_argument("--model-dir")
    p.set_defaults(func=cmd_freeze)

    if importlib.util.find_spec(TRAIN_MODULE) is not None:
        p = sub.add_parser("train", help="train and export an embedded detector on the synthetic dataset")
        p.add_argument("name")
        p.add_argument("--out-dir", help="where NAME/ is written (default: the source tree's fixtures/models; "
                                          "needed when odperf is installed from a wheel)")
        p.add_argument("--dataset-root", help="COCO-format dataset to train on (default: the synthetic one)")
        p.add_argument("--steps", type=int)
        p.add_argument("--batch-size", type=int)
        p.add_argument("--seed", type=int, default=0)
        p.set_defaults(func=cmd_train)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def rows(models: list[ModelSpec], model_dir: str | Path | None = None) -> list[list[str]]:
    return [
        [m.paper_id or "-", m.name, m.family, m.meta_arch, _fmt(m.reported_map), _fmt(m.tested_map),
         m.map_group or "n/a", _fmt(m.reported_ms, 0), "yes" if m.is_present(model_dir) else "no",
         _fmt(m.measured_map)]
        for m in models
    ]


HEADERS = ["id", "name", "family", "meta_arch", "mAP rep.", "mAP tested", "group", "ms rep.", "present",
           "mAP measured"]


def cmd_list(args: argparse.Namespace) -> int:
    picked = select(args.selectors) if args.selectors else all_models()
    models = [m for m in picked if isinstance(m, ModelSpec)]
    print(tabulate(rows(models, args.model_dir), headers=HEADERS, tablefmt=args.format, disable_numparse=True))
    where = resolve_model_dir(args.model_dir)
    print(f"\nmodel folder: {where}; mAP in percent (reported: zoo tables, COCO; tested: the paper's Table I; "
          "measured: embedded models on the synthetic set); ms per 600x600 image on a GTX TITAN X")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    spec = get(args.name)
    info = {k: v for k, v in asdict(spec).items() if v not in (None, (), {})}
    info["local_dir"] = str(spec.local_dir(args.model_dir))
    info["present"] = spec.is_present(args.model_dir)
    if args.load:
        from odperf.zoo.loaders import describe, load_detector

        info["loaded"] = describe(load_detector(spec, model_dir=args.model_dir))
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_freeze(args: argparse.Namespace) -> int:
    from types import SimpleNamespace

    from odperf.zoo.freeze import board_graph

    print(board_graph(SimpleNamespace(model=args.name, model_dir=args.model_dir)))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from odperf.zoo.fetch import fetch

    specs = [m for m in select(args.names) if isinstance(m, ModelSpec)]
    wanted = [m for m in specs if m.family != "embedded"]
    if not wanted:
        raise FetchError(f"nothing to fetch for {' '.join(args.names)}: embedded models ship with odperf "
                         "(`odperf zoo train NAME` retrains one)")
    failed = []
    for spec in wanted:
        try:
            fetch(spec, model_dir=args.model_dir, url_base=args.url_base, force=args.force)
        except (FetchError, ModelError) as exc:
            failed.append(spec.name)
            print(f"odperf zoo fetch: {spec.name}: {exc}", file=sys.stderr)
    if failed:
        print(f"odperf zoo fetch: failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from odperf.zoo.embedded import MODEL_NAMES as TF_MODELS
    from odperf.zoo.embedded_torch import MODEL_NAMES as TORCH_MODELS

    if args.name in TORCH_MODELS:
        from odperf.zoo.embedded_torch.train import train
    elif args.name in TF_MODELS:
        from odperf.zoo.embedded.train import train
    else:
        raise ModelError(f"no embedded model named {args.name!r} to train; choose one of: "
                         f"{', '.join(TF_MODELS + TORCH_MODELS)}")

    if args.out_dir:
        out_dir = Path(args.out_dir)
    elif (fixtures := writable_fixtures()) is not None:
        out_dir = fixtures / "models"
    else:
        raise ModelError(f"odperf is installed as a package ({fixtures_dir()}): a model trained into it would be "
                         f"lost on the next install; give --out-dir DIR, then run with --odperf-model-dir=DIR")
    meta = train(args.name, out_dir, dataset_root=args.dataset_root, seed=args.seed, steps=args.steps,
                 batch_size=args.batch_size, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(meta, indent=2, default=str))
    return 0
