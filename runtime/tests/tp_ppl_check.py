#!/usr/bin/env python3
"""tp_ppl_check.py: the tensor-parallel executor on one GPU, as a ctest (issue 11, part 2).

  tp_ppl_check.py ODYSSEY_RT MODEL_DIR TOKEN_WINDOWS_PY

Scores the same windows (synthetic ids, written with runtime/scripts/token-windows.py) with
`odyssey-rt ppl` unsplit and with --tp 2 (every rank a thread on this GPU), and checks:
  - --tp 2 --tp-bits 16 (exact all-reduce): every rank returned the same NLLs (the runtime says
    so in tp_ranks_identical, and refuses to answer otherwise), and each window's NLL is within
    2e-3 relative of the unsplit one (only the fp16 rounding of the ranks' partial sums differs),
    the whole perplexity within 0.05%;
  - --tp 2 --tp-bits 8: the compressed all-reduce moves the perplexity by less than 0.5%;
  - --tp 4 on a model with 2 key/value heads is refused, naming them, with a non-zero exit.
Exit 0 when all hold; prints one line per check.
"""
import json
import math
import os
import subprocess
import sys
import tempfile


def run(rt, args):
    p = subprocess.run([rt, "ppl", *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def ppl(ans):
    return math.exp(ans["nll_sum"] / ans["tokens_scored"])


def main():
    rt, model, tw = sys.argv[1], sys.argv[2], sys.argv[3]
    failed = 0

    def check(ok, what):
        nonlocal failed
        print(("ok   " if ok else "FAIL ") + what)
        failed += 0 if ok else 1

    with tempfile.TemporaryDirectory() as d:
        ids = os.path.join(d, "ids.txt")
        with open(ids, "w") as f:
            f.write(" ".join(str((i * 7919) % 500 + 3) for i in range(6000)))
        tok = os.path.join(d, "t.tok")
        subprocess.run([sys.executable, tw, "--ids", ids, "--bos", "1", "--seq-len", "128", "--max-windows", "8",
                        "--out", tok], check=True, capture_output=True)
        rc, out, err = run(rt, ["--model", model, "--tokens", tok])
        if rc != 0:
            print("FAIL unsplit run: " + err[-500:])
            return 1
        base = json.loads(out)

        rc, out, err = run(rt, ["--model", model, "--tokens", tok, "--tp", "2"])
        check(rc == 0, f"--tp 2 exact: exit {rc} {err[-300:] if rc else ''}")
        if rc == 0:
            a = json.loads(out)
            check(a.get("tp") == 2 and a.get("tp_bits") == 16 and a.get("tp_ranks_identical") is True,
                  f"--tp 2 exact: tp {a.get('tp')}, bits {a.get('tp_bits')}, ranks identical {a.get('tp_ranks_identical')}")
            worst = max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a["nll_per_window"], base["nll_per_window"]))
            check(worst <= 2e-3, f"--tp 2 exact: largest window NLL difference {worst:.2e} relative (≤ 2e-3)")
            rel = ppl(a) / ppl(base) - 1
            check(abs(rel) <= 5e-4, f"--tp 2 exact: perplexity {ppl(a):.6f} vs unsplit {ppl(base):.6f}, {100 * rel:+.4f}% (≤ 0.05%)")

        rc, out, err = run(rt, ["--model", model, "--tokens", tok, "--tp", "2", "--tp-bits", "8", "--tp-group", "128"])
        check(rc == 0, f"--tp 2 INT8: exit {rc} {err[-300:] if rc else ''}")
        if rc == 0:
            a = json.loads(out)
            rel = ppl(a) / ppl(base) - 1
            check(a.get("tp_bits") == 8 and a.get("tp_group") == 128 and abs(rel) <= 5e-3,
                  f"--tp 2 INT8 g128: perplexity {100 * rel:+.4f}% against unsplit (≤ 0.5%)")

        rc, out, err = run(rt, ["--model", model, "--tokens", tok, "--tp", "4"])
        check(rc != 0 and "key/value heads" in err, f"--tp 4 refused naming the key/value heads: exit {rc}, {err.strip()[-200:]}")
    print(f"tp_ppl_check: {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
