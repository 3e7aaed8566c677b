"""``odperf dataset``: make the embedded synthetic dataset, and check a COCO-format folder before a run.

Checking decodes every image, so a broken download shows up here rather than an hour into a benchmark.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from odperf.datasets import synthetic
from odperf.datasets.coco import CocoDataset


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="make the embedded dataset or check a COCO-format one")
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)

    make = sub.add_parser("make", help="generate the embedded synthetic dataset (once) and print its folder")
    make.add_argument("--cache-dir", type=Path, default=None,
                      help=f"where datasets are cached (default ${synthetic.CACHE_ENV} or ~/.cache/odperf)")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--val", type=int, default=synthetic.DEFAULT_N_VAL, help="validation tiles")
    make.add_argument("--train", type=int, default=synthetic.DEFAULT_N_TRAIN, help="training tiles (0: none)")
    make.set_defaults(func=cmd_make)

    check = sub.add_parser("check", help="load a COCO-format dataset and decode its images")
    check.add_argument("root", type=Path, help="folder with annotations/instances_<split>.json and <split>/")
    check.add_argument("--split", default="val2017")
    check.add_argument("--images", type=int, default=None, help="decode only the first N images")
    check.set_defaults(func=cmd_check)


def cmd_make(args: argparse.Namespace) -> int:
    root = synthetic.ensure_embedded(args.cache_dir, seed=args.seed, n_val=args.val, n_train=args.train)
    print(root)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    ds = CocoDataset.from_root(args.root, args.split)
    ids = ds.image_ids if args.images is None else ds.image_ids[: args.images]
    sizes = Counter()
    for image_id in ids:
        h, w = ds.load_image(image_id).shape[:2]
        sizes[(w, h)] += 1
    anns = ds.coco.dataset["annotations"]
    areas = np.array([a["area"] for a in anns], dtype=np.float64)
    per_cat = Counter(a["category_id"] for a in anns)
    print(f"{ds.ann_file}: {len(ds)} images, {len(anns)} annotations, {len(ds.categories)} categories")
    print(f"decoded {len(ids)} images; most common sizes (w x h): "
          + ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(3)))
    if len(areas):
        small, large = (areas < 32**2).mean(), (areas >= 96**2).mean()
        print(f"objects by COCO size: small {small:.0%}, medium {1 - small - large:.0%}, large {large:.0%}")
    names = ds.category_names
    print("objects per category: " + ", ".join(f"{i} {names[i]} ({per_cat[i]})" for i in names))
    empty = sum(1 for i in ds.image_ids if not ds.annotations(i))
    print(f"images without objects: {empty}")
    return 0
