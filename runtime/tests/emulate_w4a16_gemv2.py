#!/usr/bin/env python3
# emulate_w4a16_gemv2.py: the lane-by-lane indexing and the int4 -> fp16 dequantization of the
# W4A16 decode GEMV 2 (runtime/src/w4a16.cu, configs w4a16_gemv2_s2/_s4/_s8/_s2p), replayed on the
# CPU. Pure Python, no GPU, no numpy:
#   python3 runtime/tests/emulate_w4a16_gemv2.py [--cases DIR [--only SUBSTRING]]
# (~10 s on one core; with --cases, the w4a16 cases with M ≤ 16 of `odyssey testdata gemm-cases
# --out DIR` too, through s2, s4, s8 and s2p: a few minutes)
# Only the groups the kernel takes (32, 64, 128, K); a group of 256 would need SPG = 8.
# 1. The dequantization bit tricks, exhaustively: for every pair of 4-bit codes at every nibble
#    position of a 32-bit word, and_xor + HSUB2 (low nibbles) and and_xor + HFMA2 (high nibbles,
#    in place) give exactly the two's-complement values, with fp16 arithmetic emulated by
#    Python's IEEE half packing (struct 'e'); every intermediate is checked to be exact.
# 2. The whole kernel for small problems (every S, MH = 1 and 2, every group kind, ragged N, M
#    up to 16, K with a partial last round): packed layout (docs/fastgemm-layout.md), the warps'
#    rounds of U K blocks, the m16n8k16 fragment layout of the PTX ISA (A = 16 weight columns, B
#    = x rows), the per-group scale FMAs, the shared-memory reduction indices and the epilogue's
#    output indices, against a float64 dot product. Sums are in float64, so only indexing and the
#    dequantized values are checked: errors must be ~1e-13 relative, a swapped register is O(1).
import json
import math
import os
import random
import struct
import sys

random.seed(7)


def h(bits):  # fp16 bits -> float
    return struct.unpack('<e', struct.pack('<H', bits & 0xFFFF))[0]


def hb(v):  # float -> fp16 bits (round to nearest even), checking exactness
    b = struct.unpack('<H', struct.pack('<e', v))[0]
    assert h(b) == v, ("not exact in fp16", v)
    return b


def and_xor(a, b, c):
    return ((a & b) ^ c) & 0xFFFFFFFF


def hsub2(a, b):
    return hb(h(a) - h(b)) | (hb(h(a >> 16) - h(b >> 16)) << 16)


def hfma2(a, b, c):
    return hb(h(a) * h(b) + h(c)) | (hb(h(a >> 16) * h(b >> 16) + h(c >> 16)) << 16)


def dequant_word(w, half):  # -> (e, o): ((k0, k2), (k1, k3)) as pairs of floats
    w8 = w >> 8
    if half == 0:
        e = hsub2(and_xor(w, 0x000F000F, 0x64086408), 0x64086408)
        o = hsub2(and_xor(w8, 0x000F000F, 0x64086408), 0x64086408)
    else:
        e = hfma2(and_xor(w, 0x00F000F0, 0x64806480), 0x2C002C00, 0xD480D480)
        o = hfma2(and_xor(w8, 0x00F000F0, 0x64806480), 0x2C002C00, 0xD480D480)
    return (h(e), h(e >> 16)), (h(o), h(o >> 16))


def signed4(n):
    return (n ^ 8) - 8


# ---- 1. exhaustive dequantization check
assert h(0x2C00) == 1 / 16 and h(0xD480) == -72.0 and h(0x6408) == 1032.0
checked = 0
for a in range(16):
    for b in range(16):
        for half in range(2):
            for odd in range(2):
                # nibble positions: byte 0 / byte 2 (odd: bytes 1 / 3), low (half 0) or high nibble
                sh = 8 * odd + 4 * half
                w = (a << sh) | (b << (sh + 16))
                w |= random.getrandbits(32) & ~((0xF << sh) | (0xF << (sh + 16))) & 0xFFFFFFFF  # other nibbles: noise
                e, o = dequant_word(w, half)
                got = o if odd else e
                assert got == (signed4(a), signed4(b)), (a, b, half, odd, got)
                checked += 1
print("dequant: %d code pairs x positions exact" % checked, flush=True)


# ---- 2a. s2p's schedule of its two register buffers (the kernel's PIPE loop, replayed): every
# round is computed once, in order, from the buffer that holds that round's loads, and no load
# overwrites a buffer before its round was computed.
def pipe_schedule(rounds):
    buf, done, NB = {}, [], 2
    def load(b, t):
        assert b not in buf or buf[b] is None, ("buffer overwritten before use", b, t)
        buf[b] = t
    def compute(b, t):
        assert buf.get(b) == t, ("round computed from the wrong buffer", b, t, buf)
        buf[b] = None
        done.append(t)
    load(0, 0)
    t = 0
    while t < rounds:
        if t + 1 < rounds:
            load(NB - 1, t + 1)
        compute(0, t)
        if t + 1 >= rounds:
            break
        if t + 2 < rounds:
            load(0, t + 2)
        compute(NB - 1, t + 1)
        t += 2
    assert done == list(range(rounds)), done
for r in range(1, 40):
    pipe_schedule(r)
print("s2p schedule: rounds 1..39 ok", flush=True)


# ---- 2. the kernel's indexing
def pack(q, Np, K):  # q[n][k] signed codes -> packed bytes
    kbl = K // 128
    out = bytearray(Np // 8 * kbl * 512)
    for nb in range(Np // 8):
        for kb in range(kbl):
            for lane in range(32):
                g, t = lane >> 2, lane & 3
                for step in range(4):
                    for j in range(4):
                        n = nb * 8 + g
                        k = kb * 128 + step * 32 + 4 * t + j
                        out[((nb * kbl + kb) * 32 + lane) * 16 + step * 4 + j] = (q[n][k] & 15) | ((q[n][k + 16] & 15) << 4)
    return out


def mma(c, A, B):
    # c[lane] 4 floats += A·B; A[lane] = 4 pairs (a0..a3), B[lane] = 2 pairs. PTX m16n8k16 .f16.
    Am = [[0.0] * 16 for _ in range(16)]
    Bm = [[0.0] * 8 for _ in range(16)]
    for l in range(32):
        g, t = l >> 2, l & 3
        r = A[l]
        Am[g][2 * t], Am[g][2 * t + 1] = r[0]
        Am[g + 8][2 * t], Am[g + 8][2 * t + 1] = r[1]
        Am[g][2 * t + 8], Am[g][2 * t + 9] = r[2]
        Am[g + 8][2 * t + 8], Am[g + 8][2 * t + 9] = r[3]
        b = B[l]
        Bm[2 * t][g], Bm[2 * t + 1][g] = b[0]
        Bm[2 * t + 8][g], Bm[2 * t + 9][g] = b[1]
    for l in range(32):
        g, t = l >> 2, l & 3
        for e in range(4):
            i, j = g + 8 * (e >> 1), 2 * t + (e & 1)
            c[l][e] += sum(Am[i][k] * Bm[k][j] for k in range(16))


def g2_ahead(S, spg, mh, pipe):  # w4a16.cu's g2_ahead
    if pipe:
        return 1 if spg == 1 else 2
    if S == 2:
        return 2 if spg == 1 else 4
    return 1 if (spg == 1 or (S == 4 and mh == 2 and spg == 2)) else 2


def gemv2(x, qw, gs, cs, bias, M, N, K, G, S, pipe=False):
    # pipe (config s2p) changes when a round's loads are issued, not what is loaded or summed in
    # which order: emulated as the same rounds with its U.
    W = 8
    Np = (N + 7) // 8 * 8
    kbl = K // 128
    SPG = 0 if G >= K else G // 32
    NG = 4 // SPG if SPG else 1
    MH = 1 if M <= 8 else 2
    U = g2_ahead(S, SPG, MH, pipe)
    IT = W * U
    P = S // 2
    y = [[None] * N for _ in range(M)]
    for blk in range((Np // 8 + S - 1) // S):
        strip0 = blk * S
        real = min(S, Np // 8 - strip0)
        red = [[[0.0] * (MH * 8) for _ in range(S * 8)] for _ in range(W)]
        for warp in range(W):
            total = [[[[0.0] * 4 for _ in range(32)] for _ in range(MH)] for _ in range(P)]
            part = [[[[0.0] * 4 for _ in range(32)] for _ in range(MH)] for _ in range(P)]
            for t in range((kbl + IT - 1) // IT):
                # load(t): words and scales per lane, zeros past K or past the block's real strips
                wv = {}
                sc = {}
                for u in range(U):
                    kb = t * IT + warp + W * u
                    for j in range(S):
                        ok = kb < kbl and j < real
                        for lane in range(32):
                            g = lane >> 2
                            off = (((strip0 + j) * kbl + kb) * 32 + lane) * 16
                            wv[u, j, lane] = bytes(qw[off:off + 16]) if ok else bytes(16)
                            for gg in range(NG):
                                sc[u, j, gg, lane] = gs[kb * NG + gg][(strip0 + j) * 8 + g] if (ok and SPG) else 0
                for u in range(U):
                    kb = t * IT + warp + W * u
                    if kb >= kbl:
                        break
                    for step in range(4):
                        for half in range(2):
                            off = kb * 128 + step * 32 + half * 16
                            Bs = []
                            for hh in range(MH):
                                B = []
                                for lane in range(32):
                                    g, tg = lane >> 2, lane & 3
                                    row = g + 8 * hh
                                    xv = [x[row][off + 4 * tg + i] for i in range(4)] if row < M else [0.0] * 4
                                    B.append(((xv[0], xv[2]), (xv[1], xv[3])))  # prmt 0x5410, 0x7632
                                Bs.append(B)
                            for q in range(P):
                                A = []
                                for lane in range(32):
                                    w0 = int.from_bytes(wv[u, 2 * q, lane][4 * step:4 * step + 4], 'little')
                                    w1 = int.from_bytes(wv[u, 2 * q + 1, lane][4 * step:4 * step + 4], 'little')
                                    e0, o0 = dequant_word(w0, half)
                                    e1, o1 = dequant_word(w1, half)
                                    A.append((e0, e1, o0, o1))
                                for hh in range(MH):
                                    mma(part[q][hh], A, Bs[hh])
                        if SPG and (step + 1) % SPG == 0:
                            for q in range(P):
                                for lane in range(32):
                                    f0 = sc[u, 2 * q, step // SPG, lane]
                                    f1 = sc[u, 2 * q + 1, step // SPG, lane]
                                    for hh in range(MH):
                                        pt, tt = part[q][hh][lane], total[q][hh][lane]
                                        tt[0] += f0 * pt[0]
                                        tt[1] += f0 * pt[1]
                                        tt[2] += f1 * pt[2]
                                        tt[3] += f1 * pt[3]
                                        part[q][hh][lane] = [0.0] * 4
            if not SPG:
                total = part
            for q in range(P):
                for hh in range(MH):
                    for lane in range(32):
                        g, tg = lane >> 2, lane & 3
                        for e in range(4):
                            red[warp][(2 * q + (e >> 1)) * 8 + g][hh * 8 + 2 * tg + (e & 1)] = total[q][hh][lane][e]
        for o in range(M * S * 8):  # every thread's outputs (the loop over threadIdx.x)
            m, cl = o // (S * 8), o % (S * 8)
            c = strip0 * 8 + cl
            if (cl >> 3) >= real or c >= N:
                continue
            acc = sum(red[v][cl][m] for v in range(W))
            if not SPG:
                acc *= gs[0][c]
            val = acc * 16 * cs[c] + (bias[c] if bias else 0.0)
            assert y[m][c] is None, "output written twice"
            y[m][c] = val
    return y


cases = [  # M, N, K, G, S
    (1, 8, 128, 128, 2), (1, 56, 384, 64, 2), (2, 100, 640, 32, 4), (3, 40, 512, 512, 8),
    (4, 24, 2304, 128, 2), (8, 72, 256, 32, 8), (9, 20, 384, 64, 4), (16, 33, 256, 128, 8),
    (13, 40, 512, 128, 2), (5, 130, 2176, 64, 4), (12, 24, 256, 32, 2), (16, 24, 384, 64, 4),
    (1, 200, 4224, 128, 8), (7, 48, 4352, 4352, 4), (2, 64, 4480, 32, 2),
    (1, 40, 2304, 128, 'p'), (16, 24, 1152, 32, 'p'), (3, 24, 4224, 4224, 'p'),  # s2p
]
worst = 0.0
for (M, N, K, G, S) in cases:
    pipe = S == 'p'
    if pipe:
        S = 2
    Np = (N + 7) // 8 * 8
    q = [[random.randint(-8, 7) if n < N else 0 for _ in range(K)] for n in range(Np)]
    gs = [[random.randint(-300, 300) or 1 if n < N else 0 for n in range(Np)] for _ in range(K // G)]
    cs = [random.random() if n < N else 0.0 for n in range(Np)]
    bias = [random.gauss(0, 1) for _ in range(N)] if M % 2 else None
    x = [[random.gauss(0, 1) for _ in range(K)] for _ in range(M)]
    y = gemv2(x, pack(q, Np, K), gs, cs, bias, M, N, K, G, S, pipe)
    e, big = 0.0, 1e-30
    for m in range(M):
        for n in range(N):
            ref = sum(x[m][k] * q[n][k] * gs[k // G][n] for k in range(K)) * 16 * cs[n] + (bias[n] if bias else 0.0)
            assert y[m][n] is not None, ("output not written", m, n)
            e = max(e, abs(y[m][n] - ref))
            big = max(big, abs(ref))
    worst = max(worst, e / big)
    print("gemv2 M=%d N=%d K=%d G=%d S=%d%s: max rel err %.2e" % (M, N, K, G, S, "p" if pipe else "", e / big), flush=True)
ok = worst < 1e-9


# ---- 3. with --cases DIR: the Go reference's own tensors (docs/gemm-cases.md, kind w4a16): the
# packed qweight, group_scale [G, Np] int16, channel_scale, x and bias as the Go packer wrote them,
# through the emulated kernel (float64 sums), rounded to fp16 as the epilogue does, against the
# case's y within the test's bound (K/16 + G + 4)·2⁻²²·y_abs + one fp16 ulp.
def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    meta = hdr.pop("__metadata__", {})
    out = {}
    for name, t in hdr.items():
        a, b = t["data_offsets"]
        if t["dtype"] == "U8":
            out[name] = data[a:b]
            continue
        fmt = {"I8": "b", "I16": "h", "I32": "i", "F32": "f", "F16": "e"}[t["dtype"]]
        size = struct.calcsize(fmt)
        out[name] = list(struct.unpack("<%d%s" % ((b - a) // size, fmt), data[a:b]))
    return meta, out


def f16(v):
    return struct.unpack('<e', struct.pack('<e', v))[0]


def ulp16(ref):
    return 2.0 ** max(-24, math.floor(math.log2(max(abs(ref), 6.1e-5))) - 10)


if "--cases" in sys.argv:
    cdir = sys.argv[sys.argv.index("--cases") + 1]
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else ""
    man = json.load(open(os.path.join(cdir, "manifest.json")))
    runs = 0
    for c in man["cases"]:
        if c["kind"] != "w4a16" or only not in c["name"]:
            continue
        meta, t = read_safetensors(os.path.join(cdir, c["file"]))
        M, N, K, G = (int(meta[k]) for k in ("m", "n", "k", "group_size"))
        if M > 16:
            continue
        Np = (N + 7) // 8 * 8
        x = [t["x"][m * K:(m + 1) * K] for m in range(M)]
        gs = [t["group_scale"][g * Np:(g + 1) * Np] for g in range(K // G)]
        cs = t["channel_scale"]
        bias = t.get("bias")
        for S in (2, 4, 8, 'p'):
            pipe = S == 'p'
            y = gemv2(x, t["qweight"], gs, cs, bias, M, N, K, G, 2 if pipe else S, pipe)
            bad, worst_ulp = 0, 0
            for m in range(M):
                for n in range(N):
                    got, ref = f16(y[m][n]), t["y"][m * N + n]
                    tol = (K // 16 + K // G + 4) * 2.0 ** -22 * t["y_abs"][m * N + n] + ulp16(ref)
                    if not abs(got - ref) <= tol:
                        bad += 1
                    worst_ulp = max(worst_ulp, abs(got - ref) / ulp16(ref))
            runs += 1
            ok = ok and bad == 0
            print("case %-36s s%s: %s (max %.1f ulp)" % (c["name"], S, "ok" if bad == 0 else "%d outputs out of bound" % bad,
                                                    worst_ulp), flush=True)
    if runs == 0:
        print("no w4a16 case with M <= 16 in", cdir)
        ok = False
print("emulate_w4a16_gemv2: %s (worst %.2e)" % ("PASS" if ok else "FAIL", worst))
