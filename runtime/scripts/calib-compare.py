#!/usr/bin/env python3
"""calib-compare.py: the `calib` step of device-e2e.sh (docs/gpu-calibration.md). Reads lines
"model recipe device rc seconds ppl [goal_seconds]" on stdin and the quantize --json reports in
DIR, and writes DIR/calib.json and a Markdown table on stdout: per model and recipe, the CPU and
GPU perplexities, their relative difference (goal |rel| <= 1e-3), whether every linear's policy
agrees (goal: all), and the seconds each run took; rows with a goal (the synthetic 7B, --device
cuda only) must finish (rc 0) within it. The GPU device labels are "cuda" (the runtime's default
precision), "cuda-fp32" and "cuda-fp16" (E2E_CALIB_PRECISIONS): one table row per GPU run; the
cuda-fp32 rows are the A/B (the CPU pass's float32 arithmetic on the GPU), reported but not
required: fp16 is the runtime's default.
The last line is PASS or FAIL."""
import json
import math
import os
import sys

d = sys.argv[1]
runs = {}
bad = []  # lines that do not parse: a broken step, never a pass
for line in sys.stdin:
    f = line.split()
    if not f:
        continue
    if len(f) not in (6, 7):
        bad.append(line.rstrip("\n"))
        continue
    model, recipe, dev, rc, secs, ppl = f[:6]
    r = {"rc": int(rc), "seconds": float(secs or "nan"), "ppl": float(ppl)}
    if len(f) == 7:
        r["goal_seconds"] = float(f[6])
    runs[(model, recipe, dev)] = r


def policies(model, recipe, dev):
    try:
        rep = json.load(open(os.path.join(d, "cq-%s-%s-%s.json" % (model, recipe, dev))))
    except Exception:
        return None
    out = []
    for layer in rep.get("per_layer") or []:
        for lin in layer.get("linears", []):
            out.append((layer.get("layer"), lin.get("name"), lin.get("policy")))
    return out


rows, ok = [], True
if bad or not runs:
    # Nothing measured (or a line the step could not write, e.g. a missing tool) is a failure:
    # an empty table must not read as PASS.
    ok = False
    for b in bad:
        print("unparsed run line (counts as a failure): %r" % b, file=sys.stderr)
    if not runs:
        print("no run lines at all (counts as a failure)", file=sys.stderr)
print("| model | recipe | cpu ppl | cuda ppl | rel | policies agree | cpu s | cuda s | met |")
print("|---|---|---|---|---|---|---|---|---|")
for (model, recipe, dev), r in sorted(runs.items()):
    if dev != "cpu":
        continue
    # Every GPU run of this model and recipe (a missing one is a failed "cuda" row).
    gpu_devs = sorted({gd for (m, rc, gd) in runs if m == model and rc == recipe and gd.startswith("cuda")}) or ["cuda"]
    for gd in gpu_devs:
        g = runs.get((model, recipe, gd), {"rc": -1, "seconds": math.nan, "ppl": math.nan})
        rel = (g["ppl"] - r["ppl"]) / r["ppl"] if r["ppl"] == r["ppl"] and g["ppl"] == g["ppl"] else math.nan
        pc, pg = policies(model, recipe, "cpu"), policies(model, recipe, gd)
        agree = None if not pc or not pg else pc == pg
        # nan rel (a failed run) is not met: abs(nan) <= 1e-3 is False.
        met = r["rc"] == 0 and g["rc"] == 0 and abs(rel) <= 1e-3 and agree is not False
        required = gd != "cuda-fp32"
        if required:
            ok = ok and met
        rows.append({"model": model, "recipe": recipe, "device": gd, "cpu": r, "cuda": g, "relative_difference": rel,
                     "policies_agree": agree, "met": met, "required": required})
        print("| %s | %s (%s) | %.6f | %.6f | %+.2e | %s | %.1f | %.1f | %s |" % (
            model, recipe, gd, r["ppl"], g["ppl"], rel, agree, r["seconds"], g["seconds"],
            met if required else "%s (A/B, not required)" % met))
for (model, recipe, dev), r in sorted(runs.items()):
    if (model, recipe, "cpu") in runs:
        continue
    goal = r.get("goal_seconds")
    met = r["rc"] == 0 and (goal is None or r["seconds"] <= goal)
    ok = ok and met
    rows.append({"model": model, "recipe": recipe, "cuda": r, "met": met})
    print("| %s | %s | - | - | - | - | - | %.1f (rc %d, goal %s s) | %s |" % (model, recipe, r["seconds"], r["rc"], "-" if goal is None else "%.0f" % goal, met))
json.dump({"rows": rows, "pass": ok}, open(os.path.join(d, "calib.json"), "w"), indent=1)
print("\ncalib: %s (every preset: cuda ppl within 1e-3 of cpu with the same policies; 7B --device cuda within its goal)" % ("PASS" if ok else "FAIL"))
