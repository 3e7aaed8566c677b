"""Per case: old mean time per image with its 95% CI (Student's t over its pooled rounds), new mean, whether
the new mean lies in the old CI, the ratio new/old, mAP old/new, outcomes; from odperf ab's pooled runs."""
import json, math, sys
from scipy import stats

def load(p):
    d = json.load(open(p))
    recs = {(r["model"], r["batch_size"]): r for r in d["odperf"]["records"]}
    rounds = {}
    for b in d["benchmarks"]:
        p_ = b["params"]
        rounds[(p_["model"], int(p_["batch"]))] = b["stats"].get("data") or []
    return recs, rounds

def ci(xs):
    n = len(xs); m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    h = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return m, m - h, m + h

old_r, old_t = load(sys.argv[1]); new_r, new_t = load(sys.argv[2])
print("| model | batch | old mean s/img [95% CI] (rounds) | new mean s/img (rounds) | new/old | new in old's CI | mAP old | mAP new | outcome old/new |")
print("|---|---|---|---|---|---|---|---|---|")
inside = same_map = same_out = n = 0
for key in sorted(set(old_r) | set(new_r)):
    o, w = old_r.get(key), new_r.get(key)
    ot, nt = old_t.get(key, []), new_t.get(key, [])
    if ot and nt:
        m, lo, hi = ci(ot); nm = sum(nt) / len(nt)
        ok = lo <= nm <= hi; inside += ok; n += 1
        cells = [f"{m:.4g} [{lo:.4g}-{hi:.4g}] ({len(ot)})", f"{nm:.4g} ({len(nt)})", f"{nm / m:.3f}", "yes" if ok else "no"]
    else:
        cells = ["-", "-", "-", "-"]
    mo, mn = (o or {}).get("map"), (w or {}).get("map")
    same_map += mo == mn; same_out += (o or {}).get("outcome") == (w or {}).get("outcome")
    f = lambda v: "-" if v is None else f"{v:.6f}"
    print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + f" | {f(mo)} | {f(mn)} | {(o or {}).get('outcome')}/{(w or {}).get('outcome')} |")
print()
print(f"{inside} of {n} cases: the new mean inside the old mean's 95% CI; mAP identical in {same_map} of {len(set(old_r) | set(new_r))}; outcomes identical in {same_out}.")
