#!/usr/bin/env python3
"""token-windows.py: writes the token windows file of `odyssey-rt ppl --tokens` (docs/executor.md)
from the ids `odyssey tokenize` prints, with `odyssey eval ppl`'s protocol (eval.Perplexity:
stream = [bos] + ids, non-overlapping windows of L, remainder dropped, the first --max-windows).

A stand-in for `odyssey verify ppl` (which writes the same file itself) when validating the
runtime by hand, e.g. on the GPU machine, which has no Go:

  odyssey tokenize --model testdata/tiny-llama < testdata/text/sample.txt > /tmp/ids.txt
  python3 runtime/scripts/token-windows.py --ids /tmp/ids.txt --bos 0 --seq-len 64 \
      --max-windows 16 --out /tmp/tiny-64x16.tok

--bos is the id `odyssey eval ppl` puts in front (eval.BOS: the config's bos_token_id).
Prints the number of windows and the stream length.
"""
import argparse
import re
import struct
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", required=True, help="token ids: a JSON array or numbers separated by white space")
    ap.add_argument("--bos", type=int, required=True)
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--max-windows", type=int, default=0, help="0: all")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    text = open(a.ids).read()
    if re.search(r"[^\s\[\],0-9-]", text):
        sys.exit(f"{a.ids}: expected only token ids (numbers, brackets, commas)")
    stream = [a.bos] + [int(t) for t in re.findall(r"-?\d+", text)]
    if a.seq_len < 2:
        sys.exit("--seq-len must be at least 2: a window scores tokens 1..L-1")
    n = len(stream) // a.seq_len
    if n == 0:
        sys.exit(f"{a.ids}: {len(stream)} tokens (BOS included); one window needs {a.seq_len}")
    if 0 < a.max_windows < n:
        n = a.max_windows
    with open(a.out, "wb") as f:
        f.write(b"ODYTOK01" + struct.pack("<II", a.seq_len, n))
        f.write(struct.pack("<%di" % (n * a.seq_len), *stream[: n * a.seq_len]))
    print(f"{a.out}: {n} windows of {a.seq_len} tokens from a stream of {len(stream)}")


if __name__ == "__main__":
    main()
