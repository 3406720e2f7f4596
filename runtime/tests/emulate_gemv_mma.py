#!/usr/bin/env python3
"""emulate_gemv_mma.py: a CPU emulation of gemv_mma.cu's index arithmetic, against the Go cases.

Why: the tensor-core GEMV (runtime/src/gemv_mma.cu) was written on a machine without a GPU. This
script re-executes its address computations lane by lane — the shared-memory staging of x (row
stride, chunks, double buffers, the zero row), the ldmatrix row addresses and the fragment each
lane receives, the packed weight and group-scale addresses, the m16n8k32 fragment semantics of
the PTX ISA, the group-scale folding, the shared-memory reduction and the epilogue's (lane,
element) lookup — and compares the int32 accumulators with the Go reference (quant.W4A8AccRef)
stored in the case files of `odyssey testdata gemm-cases`. It checks the kernel's indexing, not
the GPU: the fp16 epilogue and the hardware are the device run's job (test gemm).

Usage: runtime/tests/emulate_gemv_mma.py CASE_DIR [--strips 2,4,8] [--only SUBSTRING]
Pure Python (no numpy); the M ≤ 16 cases take a few minutes.
"""
import json
import os
import struct
import sys

K_WARPS, K_U, K_BK, K_ZERO, K_XBUDGET = 8, 2, 128, 16, 96 * 1024
K_ITER = K_WARPS * K_U
MASK32 = 0xFFFFFFFF


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    meta = hdr.pop("__metadata__", {})
    out = {}
    for name, t in hdr.items():
        a, b = t["data_offsets"]
        fmt = {"I8": "b", "U8": "B", "I16": "h", "I32": "i", "F32": "f", "F16": "H"}[t["dtype"]]
        size = struct.calcsize(fmt)
        out[name] = list(struct.unpack("<%d%s" % ((b - a) // size, fmt), data[a:b]))
    return meta, out


def shape_of(m, k, strips):
    """Host: K blocks per chunk and dynamic shared memory (gemv_mma.cu shape_of)."""
    kblocks = k // K_BK
    whole = m * (k + 16)
    if whole <= K_XBUDGET:
        chunk_kb, smem = kblocks, whole
    else:
        c = ((K_XBUDGET // 2 // m - 16) // K_BK) // K_ITER * K_ITER
        chunk_kb = max(K_ITER, c)
        smem = 2 * m * (chunk_kb * K_BK + 16)
    red = K_WARPS * strips * 4 * 32 * 4
    return chunk_kb, K_ZERO + max(smem, red)


def s8(b):
    return b - 256 if b >= 128 else b


def bytes_of_word(w):
    return [s8((w >> (8 * i)) & 0xFF) for i in range(4)]


def mma(d, a, b, zero):
    """m16n8k32 s8: a[lane][0..3], b[lane][0..1] registers (uint32), d[lane][0..3] int (wrapping)."""
    A = [[0] * 32 for _ in range(16)]
    B = [[0] * 8 for _ in range(32)]
    for lane in range(32):
        gid, tig = lane >> 2, lane & 3
        for i, v in enumerate(bytes_of_word(a[lane][0])): A[gid][4 * tig + i] = v
        for i, v in enumerate(bytes_of_word(a[lane][1])): A[gid + 8][4 * tig + i] = v
        for i, v in enumerate(bytes_of_word(a[lane][2])): A[gid][16 + 4 * tig + i] = v
        for i, v in enumerate(bytes_of_word(a[lane][3])): A[gid + 8][16 + 4 * tig + i] = v
        for i, v in enumerate(bytes_of_word(b[lane][0])): B[4 * tig + i][gid] = v
        for i, v in enumerate(bytes_of_word(b[lane][1])): B[16 + 4 * tig + i][gid] = v
    for lane in range(32):
        gid, tig = lane >> 2, lane & 3
        for e, (r, c) in enumerate([(gid, 2 * tig), (gid, 2 * tig + 1), (gid + 8, 2 * tig), (gid + 8, 2 * tig + 1)]):
            s = sum(A[r][kk] * B[kk][c] for kk in range(32))
            d[lane][e] = ((0 if zero else d[lane][e]) + s) & MASK32


def run(meta, t, S):
    m, n, k, gsz = int(meta["m"]), int(meta["n"]), int(meta["k"]), int(meta["group_size"])
    np_ = (n + 7) // 8 * 8
    x, qw, gs = t["x"], t["qweight"], t["group_scale"]
    MH = 1 if m <= 8 else 2
    SPG = 0 if gsz >= k else gsz // 32
    NC = 2 * MH
    NG = 4 // SPG if SPG else 1
    chunk_kb0, _ = shape_of(m, k, S)
    chunked = chunk_kb0 < k // K_BK
    # k_blocks_ahead (gemv_mma.cu)
    U = (1 if S >= 4 else K_U) if SPG == 1 else (4 if S == 2 and not chunked else K_U)
    IT = K_WARPS * U
    kblocks, nstrips = k // K_BK, np_ // 8
    chunk_kb, smem_bytes = shape_of(m, k, S)
    cb = chunk_kb
    nchunks = (kblocks + cb - 1) // cb
    xstride = cb * K_BK + 16
    bufbytes = m * xstride
    assert K_ZERO + (2 if nchunks > 1 else 1) * bufbytes <= smem_bytes
    qbytes = bytes(b & 0xFF for b in qw)
    grid = (nstrips + S - 1) // S
    acc_out = [[None] * n for _ in range(m)]
    for blk in range(grid):
        smem = bytearray(smem_bytes)
        strip0 = blk * S
        real = min(S, nstrips - strip0)

        def stage(c, b):
            kb0, nkb = c * cb, min(cb, kblocks - c * cb)
            per_row = nkb * (K_BK // 16)
            dst = K_ZERO + b * bufbytes
            for i in range(m * per_row):
                mm, q = divmod(i, per_row)
                for z in range(16):
                    smem[dst + mm * xstride + q * 16 + z] = x[mm * k + kb0 * K_BK + q * 16 + z] & 0xFF

        def word_at(addr):
            return struct.unpack_from("<I", smem, addr)[0]

        acc = [[[[0] * NC for _ in range(S)] for _ in range(32)] for _ in range(K_WARPS)]
        part = [[[[0] * 4 for _ in range(S)] for _ in range(32)] for _ in range(K_WARPS)]
        iters = (kblocks + IT - 1) // IT
        stage(0, 0)
        staged = {0}
        for it in range(iters):
            kbase = it * IT
            c = kbase // cb
            if kbase == c * cb and c + 1 < nchunks:
                stage(c + 1, (c + 1) & 1)
            xbuf = K_ZERO + (c & 1) * bufbytes
            for warp in range(K_WARPS):
                for u in range(U):
                    kb = kbase + warp + K_WARPS * u
                    if kb >= kblocks:
                        break
                    # weights and scales of this lane (load())
                    w = [[None] * S for _ in range(32)]
                    sc = [[[0] * NG for _ in range(S)] for _ in range(32)]
                    for lane in range(32):
                        tig = lane & 3
                        for j in range(S):
                            ok = j < real
                            off = ((strip0 * kblocks * 32 + lane) * 16) + j * kblocks * 512 + kb * 512
                            w[lane][j] = struct.unpack_from("<4I", qbytes, off) if ok else (0, 0, 0, 0)
                            if SPG:
                                for g in range(NG):
                                    if ok:
                                        col = strip0 * 8 + 2 * tig + j * 8
                                        row = kb * NG + g
                                        lo = gs[row * np_ + col] & 0xFFFF
                                        hi = gs[row * np_ + col + 1] & 0xFFFF
                                        sc[lane][j][g] = lo | (hi << 16)
                    # A fragments (ldmatrix): the address each lane gives, then what each lane gets
                    addr = [0] * 32
                    astep = [0] * 32
                    for lane in range(32):
                        arow = (lane & 7) if MH == 1 else (lane & 15)
                        akoff = ((lane >> 4) * 32 + ((lane >> 3) & 1) * 16) if MH == 1 else (lane >> 4) * 16
                        ok = arow < m
                        addr[lane] = xbuf + arow * xstride + (kb - c * cb) * K_BK + akoff if ok else 0
                        astep[lane] = 32 if ok else 0

                    def ldmatrix(off_of_lane):
                        r = [[0] * 4 for _ in range(32)]
                        for j in range(4):
                            for row in range(8):
                                src = off_of_lane(8 * j + row)
                                for tig in range(4):
                                    r[row * 4 + tig][j] = word_at(src + 4 * tig)
                        return r

                    af = [[[0] * 4 for _ in range(4)] for _ in range(32)]  # [lane][step][reg]
                    if MH == 1:
                        for pr in range(2):
                            r = ldmatrix(lambda l: addr[l] + pr * 2 * astep[l])
                            for lane in range(32):
                                af[lane][2 * pr][0], af[lane][2 * pr][2] = r[lane][0], r[lane][1]
                                af[lane][2 * pr + 1][0], af[lane][2 * pr + 1][2] = r[lane][2], r[lane][3]
                    else:
                        for st in range(4):
                            r = ldmatrix(lambda l: addr[l] + st * astep[l])
                            for lane in range(32):
                                af[lane][st] = r[lane][:]
                    for st in range(4):
                        for j in range(S):
                            b = []
                            for lane in range(32):
                                ws = w[lane][j][st]
                                b.append(((ws << 4) & 0xF0F0F0F0, ws & 0xF0F0F0F0))
                            d = [part[warp][lane][j] for lane in range(32)]
                            mma(d, [af[lane][st] for lane in range(32)], b, SPG > 0 and st % SPG == 0)
                            if SPG and (st + 1) % SPG == 0:
                                for lane in range(32):
                                    s2 = sc[lane][j][st // SPG]
                                    lo = (s2 & 0xFFFF) - (0x10000 if s2 & 0x8000 else 0)
                                    hi = (s2 >> 16) - (0x10000 if s2 & 0x80000000 else 0)
                                    a_ = acc[warp][lane][j]
                                    p_ = part[warp][lane][j]
                                    a_[0] = (a_[0] + (lo & MASK32) * p_[0]) & MASK32
                                    a_[1] = (a_[1] + (hi & MASK32) * p_[1]) & MASK32
                                    if MH == 2:
                                        a_[2] = (a_[2] + (lo & MASK32) * p_[2]) & MASK32
                                        a_[3] = (a_[3] + (hi & MASK32) * p_[3]) & MASK32
        # reduction through shared memory, [warp][strip][e][lane], and the epilogue's lookup
        red = {}
        for warp in range(K_WARPS):
            for lane in range(32):
                for j in range(S):
                    for e in range(NC):
                        v = part[warp][lane][j][e] if SPG == 0 else acc[warp][lane][j][e]
                        red[((warp * S + j) * NC + e) * 32 + lane] = v
        assert K_ZERO + 4 * (max(red) + 1) <= smem_bytes
        for o in range(m * S * 8):
            mm, r = divmod(o, S * 8)
            j, cc = r >> 3, r & 7
            col = (strip0 + j) * 8 + cc
            if strip0 + j >= nstrips or col >= n:
                continue
            l, e = (mm & 7) * 4 + (cc >> 1), (mm >> 3) * 2 + (cc & 1)
            total = 0
            for v in range(K_WARPS):
                total = (total + red[((v * S + j) * NC + e) * 32 + l]) & MASK32
            if SPG == 0:
                total = (total * (gs[col] & MASK32)) & MASK32
            acc_out[mm][col] = total - (1 << 32) if total & 0x80000000 else total
    return acc_out


def main():
    d = sys.argv[1]
    strips = [2, 4, 8]
    only = None
    args = sys.argv[2:]
    while args:
        if args[0] == "--strips":
            strips = [int(s) for s in args[1].split(",")]
            args = args[2:]
        elif args[0] == "--only":
            only = args[1]
            args = args[2:]
        else:
            sys.exit("unknown argument " + args[0])
    man = json.load(open(os.path.join(d, "manifest.json")))
    bad = 0
    ran = 0
    for c in man["cases"]:
        if c["kind"] != "w4a8" or (only and only not in c["name"]):
            continue
        meta, t = read_safetensors(os.path.join(d, c["file"]))
        m, n = int(meta["m"]), int(meta["n"])
        if m > 16:
            continue
        for S in strips:
            got = run(meta, t, S)
            want = t["acc"]
            diff = sum(1 for mm in range(m) for col in range(n) if got[mm][col] != want[mm * n + col])
            ran += 1
            bad += diff > 0
            print("%-50s S=%d %s" % (c["name"], S, "ok" if diff == 0 else "%d accumulators differ" % diff), flush=True)
    print("emulated %d runs, %d failed" % (ran, bad))
    sys.exit(1 if bad or not ran else 0)


if __name__ == "__main__":
    main()
