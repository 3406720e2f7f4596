#!/usr/bin/env python3
# fc_sass_count.py: issue slots per value of the codec reduce kernels (runtime/NOTES.md, "Codec kernels v4").
#   nvcc -ccbin g++-11 -std=c++17 -arch=sm_90 -cubin -fmad=false -ftz=false --expt-relaxed-constexpr \
#     -I runtime/src -I runtime/include runtime/src/flashcomm.cu -o /tmp/fc.cubin
#   cuobjdump -sass /tmp/fc.cubin | awk '/Function : /{f=($0 ~ "fc5_reduceILi4ELb0ELi8E")} f' > /tmp/k.sass
#   python3 runtime/tests/fc_sass_count.py /tmp/k.sass LOG2_L RANKS VALUES_PER_LANE   (INT4 g128, 8 ranks: 2 8 32)
# Counts the warp-instructions one tile of a codec reduce kernel issues on its common path
# (converged warp, no ±0 extreme, no tie redo, every lane active), from its SASS (cuobjdump -sass).
# Branch rules: BRA.DIV not taken; a forward branch right after a VOTE.ANY taken (the rare path is
# skipped); other forward conditional branches not taken (their body issues whenever one lane
# needs it); backward branches: the outermost one (the tile loop) ends the walk, a loop with SHFL
# runs log2L times, a loop with LDG (v3's batches of 4 ranks) runs ranks/4 times.
import re, sys, collections
def parse(path):
    ins = []
    for line in open(path):
        m = re.match(r'\s+/\*([0-9a-f]{4,})\*/\s+(.*?);', line)
        if m: ins.append((int(m.group(1), 16), m.group(2).strip()))
    return ins
def walk(ins, log2L, ranks):
    addr = {a: i for i, (a, _) in enumerate(ins)}
    back = [(i, int(re.search(r'BRA (?:`\(.*?\) )?0x([0-9a-f]+)', t).group(1), 16)) for i, (a, t) in enumerate(ins)
            if 'BRA' in t and re.search(r'BRA 0x([0-9a-f]+)', t) and int(re.search(r'BRA 0x([0-9a-f]+)', t).group(1), 16) < a]
    tile_i, tile_t = min(back, key=lambda b: b[1])
    i, n, trips = addr[tile_t], collections.Counter(), collections.Counter()
    ops = collections.Counter()
    first_shfl = None
    steps, vote_p = 0, None
    while i != tile_i:
        steps += 1
        assert steps < 20000, "walk does not end"
        mv = re.search(r'VOTE\.ANY (P\d), ', ins[i][1])
        if mv: vote_p = mv.group(1)
        a, t = ins[i]
        op = t.split()[1] if t.startswith('@') else t.split()[0]
        ops[op.split('.')[0]] += 1
        if op.startswith('SHFL') and first_shfl is None: first_shfl = sum(ops.values()) - 1
        m = re.search(r'BRA 0x([0-9a-f]+)', t)
        if m and not op.startswith('BRA.DIV'):
            tgt = int(m.group(1), 16)
            cond = t.startswith('@')
            if not cond: i = addr[tgt]; continue
            if tgt > a:
                if vote_p and t.startswith('@!' + vote_p + ' '): vote_p = None; i = addr[tgt]; continue
            else:
                body = [x[1] for x in ins[addr[tgt]:i]]
                k = log2L if any('SHFL' in b for b in body) else ranks // 4
                trips[a] += 1
                if trips[a] < k: i = addr[tgt]; continue
        i += 1
    return ops, first_shfl
if __name__ == '__main__':
    path, log2L, ranks, nv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ops, fs = walk(parse(path), log2L, ranks)
    tot = sum(ops.values())
    print(f"{path}: {tot} instructions per tile per lane ({nv} values/lane): {tot/nv:.1f} per output value, "
          f"{fs} before the first shuffle ({fs/nv/ranks:.2f} per received value), {tot-fs} from it ({(tot-fs)/nv:.1f} per value)")
    print("   ", ", ".join(f"{k} {v}" for k, v in ops.most_common(14)))
