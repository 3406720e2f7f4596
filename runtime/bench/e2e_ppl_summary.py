#!/usr/bin/env python3
"""e2e_ppl_summary.py: the accuracy half of issue 14's results, from device-e2e.sh's answers.

    python3 runtime/bench/e2e_ppl_summary.py E2E_DIR ../shared/golden/ppl.json OUT.json OUT.md [--commit C]

Reads E2E_DIR/ppl-fp16-<model>.json (odyssey verify ppl on the whole text, FP16 path) and
E2E_DIR/ppl-<model>-<preset>.json (verify ppl --compare-cpu on the same windows as eval ppl), and
writes one JSON with every row and the `goals` list ({name, target, measured, met}):
  - FP16 path vs the golden float16 perplexity of PyTorch/transformers: |rel| <= 0.05%
    (small-llama-outliers computes small-llama's function; its golden entry is small-llama's)
  - every preset's artifact, GPU vs `odyssey eval ppl` (CPU) on the same windows: |rel| <= 0.2%
"""
import json, os, sys

GOLDEN_NAME = {"tiny-llama": "tiny-llama", "small-llama-outliers": "small-llama", "stories260K": "stories260K"}
DATA_KEY = {"wiki.test.raw": "wikitext2_test", "tinystories_slice.txt": "tinystories_slice"}


def main(argv):
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    e2e, golden_path, out_json, out_md = argv[1:5]
    commit = argv[argv.index("--commit") + 1] if "--commit" in argv else "unknown"
    golden = json.load(open(golden_path))
    rows, goals, gpu = [], [], None
    for f in sorted(os.listdir(e2e)):
        if not (f.startswith("ppl-") and f.endswith(".json")):
            continue
        d = json.load(open(os.path.join(e2e, f)))
        gpu = gpu or d.get("gpu")
        name = f[len("ppl-"):-len(".json")]
        if name.startswith("fp16-"):
            model = name[len("fp16-"):]
            g = golden[GOLDEN_NAME[model]]["results"]["%s/L%d/float16" % (DATA_KEY[os.path.basename(d["data"])], d["seq_len"])]
            rel = (d["ppl"] - g["ppl"]) / g["ppl"]
            rows.append({"model": model, "preset": "fp16", "path": d["path"], "data": os.path.basename(d["data"]),
                         "seq_len": d["seq_len"], "windows": d["windows"], "ppl_gpu": d["ppl"],
                         "ppl_golden_fp16": g["ppl"], "golden_windows": g["windows"], "rel": rel})
            goals.append({"name": "FP16 path = golden fp16 ppl, %s (%s, L %d, %d windows)" % (model, os.path.basename(d["data"]), d["seq_len"], d["windows"]),
                          "target": "abs(rel) <= 5e-4", "measured": rel, "met": abs(rel) <= 5e-4 and g["windows"] == d["windows"]})
        else:
            c = d.get("cpu") or {}
            model, preset = name.rsplit("-", 2)[0], "-".join(name.rsplit("-", 2)[1:])
            rel = c.get("relative_difference")
            rows.append({"model": model, "preset": preset, "path": d["path"], "data": os.path.basename(d["data"]),
                         "seq_len": d["seq_len"], "windows": d["windows"], "ppl_gpu": d["ppl"], "ppl_cpu": c.get("ppl"),
                         "rel": rel, "max_window_rel": c.get("max_window_relative_difference")})
            goals.append({"name": "GPU = CPU ppl, %s %s (%s, L %d, %d windows)" % (model, preset, os.path.basename(d["data"]), d["seq_len"], d["windows"]),
                          "target": "abs(rel) <= 2e-3", "measured": rel, "met": rel is not None and abs(rel) <= 2e-3})
    res = {"benchmark": "e2e-ppl", "commit": commit, "gpu": gpu, "rows": rows, "goals": goals,
           "source": "runtime/scripts/device-e2e.sh ppl-fp16 ppl-quant; runtime/bench/e2e_ppl_summary.py"}
    with open(out_json, "w") as fh:
        json.dump(res, fh, indent=1)
    with open(out_md, "w") as fh:
        fh.write("# Executor accuracy on the H200 (commit %s)\n\n" % commit)
        fh.write("GPU: %s. FP16 rows: the whole text against PyTorch/transformers float16 (shared/golden/ppl.json). "
                 "Quantized rows: `odyssey verify ppl --compare-cpu`, the same windows through `odyssey eval ppl`.\n\n" % (gpu or {}).get("name"))
        fh.write("| model | preset | path | data, L × windows | GPU ppl | reference ppl | relative difference | goal |\n|---|---|---|---|---:|---:|---:|---|\n")
        for r, g in zip(rows, goals):
            ref = r.get("ppl_golden_fp16", r.get("ppl_cpu"))
            fh.write("| %s | %s | %s | %s, %d × %d | %.6f | %.6f (%s) | %+.2e | %s %s |\n" % (
                r["model"], r["preset"], r["path"], r["data"], r["seq_len"], r["windows"], r["ppl_gpu"], ref,
                "golden fp16" if "ppl_golden_fp16" in r else "CPU", r["rel"], g["target"], "met" if g["met"] else "**not met**"))
    print("%d rows, %d of %d goals met" % (len(rows), sum(g["met"] for g in goals), len(goals)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
