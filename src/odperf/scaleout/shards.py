"""Which shards a cluster run holds, and what each needs of a node. Pure data: no Ray here.

A profile is what a node declares at ``ray start --resources '{"odperf:<profile>": N}'``: ``cpu``, a GPU
or Jetson profile (``v100_sxm2``, ``tx2``, or the slug odperf detects for a card its table does not
know), an emulated memory size on the CPU (``cpu_400mb``, given its size by ``--emulate NAME:MB``), or
an emulated card on a bigger one (``p100_on_h100``). N is how many shards of that profile the node runs
at once: its number of GPUs of that kind, 1 for the CPU.

By default a shard is one model on one profile with all its batch sizes, so that a model's batch curve
comes from one card; ``by_case`` splits further, one shard per batch size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from odperf.errors import OdperfError
from odperf.suite.targets import emulated_on, parse_emulation, split_emulated_on

RESOURCE_PREFIX = "odperf:"


class ShardFailed(Exception):
    """pytest on the node saved no results for a shard that had cases to run (Ray retries it)."""


@dataclass(frozen=True)
class ClusterProfile:
    """A device profile as the cluster runs it: what the shard's pytest is told, and what it needs."""

    name: str
    devices: str  # --odperf-devices on the node: cpu, or gpu (the first GPU the node gave the task)
    emulate: str | None = None  # --odperf-emulate on the node
    gpu: bool = False  # a discrete NVIDIA GPU: the task asks Ray for one (num_gpus=1)

    @property
    def resource(self) -> str:
        return f"{RESOURCE_PREFIX}{self.name}"


@dataclass(frozen=True)
class ModelEntry:
    """A selected model: the selector a node is given, and what its crash records carry."""

    name: str
    selector: str
    backend: str | None = None
    meta_arch: str | None = None
    map_group: str | None = None


@dataclass(frozen=True)
class Shard:
    """One Ray task: some batch sizes of one model on one profile, run as one pytest session on a node."""

    index: int
    profile: ClusterProfile
    model: ModelEntry
    batch_sizes: tuple[int, ...]

    @property
    def label(self) -> str:
        sizes = ",".join(map(str, self.batch_sizes))
        return f"#{self.index} {self.model.name} b{sizes} on {self.profile.name}"

    def case_ids(self) -> list[str]:
        """The suite's test ids for this shard (odperf.suite.matrix.Case.id: gpu:0 is labelled gpu)."""
        label = "cpu" if self.profile.devices == "cpu" else "gpu"
        return [f"{self.model.name}-b{b}-{label}" for b in self.batch_sizes]


@dataclass
class ShardOptions:
    """What every shard's pytest is told besides its own model, batch sizes and profile."""

    images: int
    accuracy: bool
    pytest_args: list[str] = field(default_factory=list)
    scorer: str | None = None  # --odperf-scorer of an accuracy run (None: the suite's default)


def resolve_profile(name: str, emulations: dict[str, str]) -> ClusterProfile:
    """The profile a resource ``odperf:<name>`` stands for. ``emulations``: NAME -> NAME:MB (CPU sizes)."""
    from odperf.measure.devices import load_table

    table = load_table()
    if name == "cpu":
        return ClusterProfile(name, "cpu")
    if name in emulations:
        return ClusterProfile(name, "cpu", emulate=emulations[name])
    on = split_emulated_on(name)
    if on is not None and table.rule(on[0]) is not None:
        return ClusterProfile(name, "gpu", emulate=on[0], gpu=True)
    rule = table.rule(name)
    # A Jetson board has no NVML and Ray counts no GPU on it: its profile resource alone places the shard.
    return ClusterProfile(name, "gpu", gpu=rule is None or rule.kind == "gpu")


def emulation_names(specs: Iterable[str]) -> dict[str, str]:
    """``--emulate NAME:MB`` values by NAME (checked as ``--odperf-emulate`` checks them)."""

    out = {}
    for spec in specs:
        emu = parse_emulation(spec)
        if emu.table_profile:
            raise OdperfError(f"--emulate {spec}: on a cluster an emulated card is a profile of its own: declare "
                              f"odperf:{emulated_on(emu.name, '<real profile>')} on the nodes that have the real card")
        out[emu.name] = spec
    return out


def declared_profiles(resources: dict[str, Any]) -> list[str]:
    """Profiles the cluster's nodes declare (``ray.cluster_resources()``), cpu first."""
    names = sorted(k[len(RESOURCE_PREFIX):] for k in resources if k.startswith(RESOURCE_PREFIX))
    return sorted(names, key=lambda n: n != "cpu")


def select_models(selectors: str) -> list[ModelEntry]:
    """The models a selection names, as nodes will be told them (a path keeps its name: NAME=PATH)."""
    from odperf.suite.matrix import slug
    from odperf.zoo.registry import ExportedModel, path_model_name, select

    out = []
    for item in select(s.strip() for s in selectors.split(",") if s.strip()):
        if isinstance(item, ExportedModel):
            out.append(ModelEntry(item.name, f"{item.name}={item.path}"))
        elif isinstance(item, Path):
            name = slug(path_model_name(item))
            out.append(ModelEntry(name, f"{name}={item}"))
        else:
            out.append(ModelEntry(item.name, item.name, item.backend, item.meta_arch, item.map_group))
    return out


def make_shards(profiles: Sequence[ClusterProfile], models: Sequence[ModelEntry], batch_sizes: Sequence[int],
                by_case: bool = False) -> list[Shard]:
    """Every model on every profile; a model's batch sizes in one shard unless ``by_case``."""
    groups = [(b,) for b in batch_sizes] if by_case else [tuple(batch_sizes)]
    pairs = [(p, m, g) for m in models for p in profiles for g in groups]
    return [Shard(i + 1, p, m, g) for i, (p, m, g) in enumerate(pairs)]


def ray_options(shard: Shard, retries: int) -> dict[str, Any]:
    """The task's Ray options: one GPU for a GPU shard, one slot of its profile, one CPU; Ray retries a
    shard whose node or worker died and one whose pytest wrote no results (``ShardFailed``)."""
    return {
        "num_cpus": 1,
        "num_gpus": 1 if shard.profile.gpu else 0,
        "resources": {shard.profile.resource: 1},
        "max_retries": retries,
        "retry_exceptions": [ShardFailed],
        "name": f"odperf shard {shard.label}",
    }
