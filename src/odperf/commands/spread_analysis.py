"""What the spread study's workers say about the cause: computed from their figures, never asserted.

- the baseline's spread: the slowest over the fastest worker, and A/A pair ratios of consecutive workers;
- each variant against the baseline: its median time per image over the baseline's;
- which part moves: the range of the device's time (CUDA events) and of the host's across baseline workers;
- what moves with the time: Spearman's rank correlation of each worker's time per image with its SM clock,
  power, temperature, allocator peak, other processes on the card, device and host time, and the host's
  load while it was timed (its own cores, everyone else's, the hypervisor's steal);
- data or process: how well the per-image times of two workers agree in rank (the same images slow in every
  worker points at data-dependent work; whole workers slow points at the process's state), and each
  worker's second half over its first (still warming up when far from 1).
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any, Sequence

from scipy import stats

from odperf.measure.gpu_state import held

MIN_CORRELATED = 4  # workers with a figure before its correlation is computed


def _ok(workers: Sequence[dict[str, Any]], variant: str | None = None) -> list[dict[str, Any]]:
    return [w for w in workers if w["outcome"] == "ok" and w.get("mean_s")
            and (variant is None or w["variant"] == variant)]


def _host_s(w: dict[str, Any]) -> float | None:
    return None if w.get("device_mean_s") is None else w["mean_s"] - w["device_mean_s"]


def _load(w: dict[str, Any], key: str) -> float | None:
    return (w.get("load") or {}).get(key)


def _median_of(block: Any) -> float | None:
    return block.get("median") if isinstance(block, dict) else None


FACTORS = {
    "SM clock median MHz": lambda w: _median_of(w.get("sm_clock_mhz")),
    "SM clock min MHz": lambda w: (w.get("sm_clock_mhz") or {}).get("min"),
    "power median W": lambda w: _median_of(w.get("power_w")),
    "temperature max C": lambda w: (w.get("temperature_c") or {}).get("max"),
    "GPU busy median %": lambda w: _median_of(w.get("utilization_pct")),
    "device s/img": lambda w: w.get("device_mean_s"),
    "host s/img": _host_s,
    "allocator reserved peak MB": lambda w: w.get("allocator_reserved_peak_mb"),
    "other processes on the card": lambda w: (w.get("card_before") or {}).get("processes"),
    "card memory used before MB": lambda w: (w.get("card_before") or {}).get("used_mb"),
    "intra-op threads": lambda w: (w.get("runtime_settings") or {}).get("threads"),
    "worker cores busy": lambda w: _load(w, "worker_cores"),
    "others' cores busy": lambda w: _load(w, "others_cores"),
    "hypervisor steal cores": lambda w: _load(w, "steal_cores"),
}


def spread_of(means: Sequence[float]) -> dict[str, Any] | None:
    """Slowest / fastest and A/A pair ratios (second / first of each consecutive pair) of worker means."""
    if len(means) < 2:
        return None
    pairs = [means[i + 1] / means[i] for i in range(0, len(means) - 1, 2)]
    return {"n": len(means), "min_s": min(means), "max_s": max(means), "max_over_min": max(means) / min(means),
            "median_s": statistics.median(means), "pair_ratios": pairs}


def correlations(workers: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Spearman's rho (and p) of time per image against each factor over the workers that have it."""
    out: dict[str, dict[str, Any]] = {}
    for name, get in FACTORS.items():
        pairs = [(w["mean_s"], get(w)) for w in workers if get(w) is not None]
        if len(pairs) < MIN_CORRELATED or len({round(float(v), 9) for _, v in pairs}) < 2:
            continue
        rho, p = stats.spearmanr([t for t, _ in pairs], [v for _, v in pairs])
        out[name] = {"rho": float(rho), "p": float(p), "n": len(pairs)}
    return out


def image_agreement(workers: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean pairwise Spearman rho of per-image times between workers timing the same images."""
    series = [w["times_s"] for w in workers if len(w["times_s"]) >= 3]
    series = [s for s in series if len(s) == len(series[0])] if series else []
    rhos = [float(stats.spearmanr(a, b)[0]) for a, b in itertools.combinations(series, 2)]
    rhos = [r for r in rhos if r == r]  # a constant series has no rank correlation
    if not rhos:
        return None
    return {"mean_rho": statistics.fmean(rhos), "pairs": len(rhos)}


def halves(w: dict[str, Any]) -> float | None:
    """Mean of the second half of a worker's images over the first half's."""
    t = w["times_s"]
    if len(t) < 4:
        return None
    k = len(t) // 2
    return statistics.fmean(t[k:]) / statistics.fmean(t[:k])


def analyse(workers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ok = _ok(workers)
    base = _ok(workers, "baseline")
    base_median = statistics.median([w["mean_s"] for w in base]) if base else None
    variants = {}
    for name in dict.fromkeys(w["variant"] for w in workers):
        mine = _ok(workers, name)
        means = [w["mean_s"] for w in mine]
        variants[name] = {
            "workers": sum(1 for w in workers if w["variant"] == name), "ok": len(mine),
            "median_s": statistics.median(means) if means else None,
            "over_baseline": statistics.median(means) / base_median if means and base_median else None,
            "max_over_min": max(means) / min(means) if len(means) > 1 else None,
        }
    parts = {}
    for label, get in (("device", lambda w: w.get("device_mean_s")), ("host", _host_s)):
        values = [get(w) for w in base if get(w) is not None]
        if len(values) > 1:
            parts[label] = {"min_s": min(values), "max_s": max(values), "range_s": max(values) - min(values)}
    reasons: dict[str, int] = {}
    for w in ok:
        for name in held(w.get("clock_event_reasons")):
            reasons[name] = reasons.get(name, 0) + 1
    return {
        "baseline": spread_of([w["mean_s"] for w in base]),
        "variants": variants,
        "parts": parts,
        "correlations": correlations(ok),
        "image_agreement": image_agreement(base),
        "halves": {w["worker"]: halves(w) for w in ok},
        "workers_with_clock_events": reasons,  # reason -> workers it held the clocks in (gpu_idle aside)
        "failed": [f"worker {w['worker']} {w['variant']}: {w['outcome']}: {w.get('error')}"
                   for w in workers if w["outcome"] != "ok"],
        # a GPU worker (NVML saw its card) that ran but lacks what every GPU record must carry
        "missing_gpu_figures": [f"worker {w['worker']}: " + ", ".join(
            name for name, key in (("no clocks", "sm_clock_mhz"), ("no device time", "device_mean_s")) if w.get(key) is None)
            for w in ok if w.get("card_before") is not None
            and (w.get("sm_clock_mhz") is None or w.get("device_mean_s") is None)],
    }


def warmup_text(steady: dict[str, Any] | None, seconds: float | None) -> str:
    """``7 images, settled, 3.1 s`` for a steady warm-up; the seconds alone for the fixed one."""
    took = "-" if seconds is None else f"{seconds:.1f} s"
    if not steady:
        return took
    return f"{steady['images']} images, {'settled' if steady['steady'] else 'not settled'}, {took}"


def _f(value: Any, fmt: str = ".4g") -> str:
    return "-" if value is None else format(value, fmt) if isinstance(value, (int, float)) else str(value)


def markdown(config: Any, workers: Sequence[dict[str, Any]], analysis: dict[str, Any], command: str,
             device_name: str, seconds: float, tests: dict[str, str] | None = None) -> str:
    """The study's write-up: its figures in tables, each line computed from the workers above."""
    lines = [f"# Spread study: {config.model} at batch {config.batch_size} on {device_name} ({config.device})", "",
             f"Command: `{command}`; {len(workers)} fresh workers, {config.images} timed images each, "
             f"{seconds:.0f} s in all. Every figure below was measured by this command on this device.", "",
             "## Workers, in the order they ran", "",
             "| # | variant | outcome | s/img | device s/img | host share | SM MHz min/med/max | power W med "
             "| temp C max | busy % med | clock events (not idle) | allocator reserved MB | threads | cores | other procs "
             "| host: worker / others / steal cores | warm-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in workers:
        sm = w.get("sm_clock_mhz") or {}
        events = held(w.get("clock_event_reasons"))
        rs = w.get("runtime_settings") or {}
        lines.append("| " + " | ".join([
            str(w["worker"]), w["variant"], w["outcome"], _f(w.get("mean_s")), _f(w.get("device_mean_s")),
            _f(w.get("host_share"), ".0%"), "/".join(_f(sm.get(k), ".0f") for k in ("min", "median", "max")),
            _f(_median_of(w.get("power_w")), ".0f"), _f((w.get("temperature_c") or {}).get("max"), ".0f"),
            _f(_median_of(w.get("utilization_pct")), ".0f"),
            "-" if w.get("clock_event_reasons") is None else
            ", ".join(f"{k} {v:.0%}" for k, v in events.items()) or "none",
            _f(w.get("allocator_reserved_peak_mb"), ".0f"), _f(rs.get("threads")), _f(rs.get("cpu_affinity")),
            _f((w.get("card_before") or {}).get("processes")),
            "/".join(_f(_load(w, k), ".2f") for k in ("worker_cores", "others_cores", "steal_cores")),
            warmup_text(rs.get("warmup"), (w.get("deploy_s") or {}).get("warmup"))]) + " |")
    base = analysis["baseline"]
    lines += ["", "## The baseline's spread", ""]
    if base:
        lines.append(f"{base['n']} baseline workers: {base['min_s']:.4g}-{base['max_s']:.4g} s per image, slowest "
                     f"/ fastest {base['max_over_min']:.3f}; A/A pair ratios "
                     f"{', '.join(f'{r:.3f}' for r in base['pair_ratios'])}.")
    else:
        lines.append("Fewer than 2 baseline workers ran: no spread to state.")
    for part, block in analysis["parts"].items():
        lines.append(f"- {part} time per image across baseline workers: {block['min_s']:.4g}-{block['max_s']:.4g} s "
                     f"(range {block['range_s']:.4g} s)")
    if getattr(config, "pinned", None):  # a variant that pins the worker near its GPU was asked for
        ran = sorted({w["variant"] for w in workers if w.get("pinned_to")})
        lines += ["", f"Pinned near the GPU ({', '.join(ran)}): ran on {config.pinned}." if ran else
                  f"The variant pinning the worker near the GPU was left out: {config.pinned}."]
    lines += ["", "## Each variant against the baseline", "", "| variant | tests | workers (ok) | median s/img "
              "| over the baseline's median | slowest / fastest |", "|---|---|---|---|---|---|"]
    for name, v in analysis["variants"].items():
        lines.append(f"| {name} | {(tests or {}).get(name, '')} | {v['workers']} ({v['ok']}) | {_f(v['median_s'])} | "
                     f"{_f(v['over_baseline'], '.3f')} | {_f(v['max_over_min'], '.3f')} |")
    lines += ["", "## What moves with the time per image (Spearman, all ok workers)", "",
              "| figure | rho | p | workers |", "|---|---|---|---|"]
    lines += [f"| {k} | {c['rho']:+.2f} | {c['p']:.3g} | {c['n']} |" for k, c in analysis["correlations"].items()]
    if not analysis["correlations"]:
        lines.append(f"| (fewer than {MIN_CORRELATED} workers with a varying figure) | - | - | - |")
    agree = analysis["image_agreement"]
    lines += ["", "## Data or process", "",
              f"- per-image times of two baseline workers agree in rank by mean rho "
              f"{_f(agree['mean_rho'], '+.2f')} over {agree['pairs']} pairs" if agree else
              "- too few images per worker to compare their per-image times",
              "- second half over first half of each worker's images: " + ", ".join(
                  f"#{k} {_f(v, '.3f')}" for k, v in analysis["halves"].items()),
              "- clock-event reasons other than idle, by the workers they held: " + (", ".join(
                  f"{k} in {n}" for k, n in analysis["workers_with_clock_events"].items()) or "none")]
    if analysis["failed"]:
        lines += ["", "## Failed workers", "", *(f"- {f}" for f in analysis["failed"])]
    if analysis["missing_gpu_figures"]:
        lines += ["", "## PROBLEM: GPU workers without the GPU's figures", "",
                  *(f"- {f}" for f in analysis["missing_gpu_figures"])]
    return "\n".join(lines) + "\n"
