#!/usr/bin/env python3
# emulate_gemv_f16.py: the lane-by-lane indexing of the two decode GEMVs that use mma with the
# roles swapped (runtime/src/gemv_f16.cu, and w4a16.cu's config w4a16_gemv), emulated on the CPU
# with the m16n8k16 .f16 fragment layout of the PTX ISA, against a plain dot product (float64,
# so only the indexing is checked, not the tensor cores' rounding). Pure Python, no GPU:
#   python3 runtime/tests/emulate_gemv_mma.py      (about a minute; every error should be ~1e-13)
# A swapped register (e.g. B's (k0,k1)/(k2,k3)) makes the f16 errors O(10).
import random
random.seed(1)
class A2:
    def __init__(s, r, c, v=0.0): s.r, s.c = r, c; s.d = [[v]*c for _ in range(r)]
    def __getitem__(s, ij): return s.d[ij[0]][ij[1]]
    def __setitem__(s, ij, v): s.d[ij[0]][ij[1]] = v
def randn(r, c): a = A2(r, c); a.d = [[random.gauss(0,1) for _ in range(c)] for _ in range(r)]; return a

def mma(c, A, B):
    # A[lane] = 4 regs each (lo, hi); B[lane] = 2 regs; c[lane] = 4 floats. PTX ISA m16n8k16 .f16 layout.
    Am = A2(16,16); Bm = A2(16,8)
    for l in range(32):
        g, t = l >> 2, l & 3
        r = A[l]
        Am[g, 2*t], Am[g, 2*t+1] = r[0]
        Am[g+8, 2*t], Am[g+8, 2*t+1] = r[1]
        Am[g, 2*t+8], Am[g, 2*t+9] = r[2]
        Am[g+8, 2*t+8], Am[g+8, 2*t+9] = r[3]
        b = B[l]
        Bm[2*t, g], Bm[2*t+1, g] = b[0]
        Bm[2*t+8, g], Bm[2*t+9, g] = b[1]
    C = A2(16,8)
    for i in range(16):
        for j in range(8): C[i,j] = sum(Am[i,k]*Bm[k,j] for k in range(16))
    for l in range(32):
        g, t = l >> 2, l & 3
        c[l][0] += C[g, 2*t]; c[l][1] += C[g, 2*t+1]; c[l][2] += C[g+8, 2*t]; c[l][3] += C[g+8, 2*t+1]

def f16_gemv(x, W, M, N, K, bias=None, kW=8, kU=4):
    y = A2(M, N)
    nsteps = (K + 31)//32; nsuper = (nsteps + kU - 1)//kU
    for blk in range((N + 15)//16):
        red = [A2(16, 8) for _ in range(kW)]
        for w in range(kW):
            c = [[0.0]*4 for _ in range(32)]
            for ss in range(w, nsuper, kW):
                for u in range(kU):
                    A = []; B = []
                    for l in range(32):
                        g, t = l >> 2, l & 3
                        k0 = (ss*kU + u)*32 + 8*t
                        def load(row, ok, arr):
                            v = [0.0]*8
                            if ok:
                                for i in range(8):
                                    if k0 + i < K: v[i] = arr[row, k0+i]
                            return v
                        r0, r1 = blk*16+g, blk*16+g+8
                        a0 = load(r0, r0 < N, W); a1 = load(r1, r1 < N, W); b = load(g, g < M, x)
                        A.append([(a0[0],a0[1]),(a1[0],a1[1]),(a0[2],a0[3]),(a1[2],a1[3])]); B.append([(b[0],b[1]),(b[2],b[3])])
                        A[-1] = (A[-1], [(a0[4],a0[5]),(a1[4],a1[5]),(a0[6],a0[7]),(a1[6],a1[7])]); B[-1] = (B[-1], [(b[4],b[5]),(b[6],b[7])])
                    mma(c, [a[0] for a in A], [b[0] for b in B])
                    mma(c, [a[1] for a in A], [b[1] for b in B])
            for l in range(32):
                g, t = l >> 2, l & 3
                red[w][g, 2*t] = c[l][0]; red[w][g, 2*t+1] = c[l][1]; red[w][g+8, 2*t] = c[l][2]; red[w][g+8, 2*t+1] = c[l][3]
        for tid in range(128):
            rl, m = tid >> 3, tid & 7
            n = blk*16 + rl
            if m >= M or n >= N: continue
            y[m, n] = sum(red[w][rl, m] for w in range(kW)) + (bias[n] if bias is not None else 0)
    return y

def maxerr_f16(M, N, K):
    x = randn(M, K); W = randn(N, K); b = [random.gauss(0,1) for _ in range(N)]
    y = f16_gemv(x, W, M, N, K, b)
    e = 0
    for m in range(M):
        for n in range(N):
            ref = sum(x[m,k]*W[n,k] for k in range(K)) + b[n]
            e = max(e, abs(y[m,n]-ref))
    return e
for (M, N, K) in [(1, 17, 13), (3, 40, 264), (8, 33, 72), (5, 20, 1100)]:
    print("f16", M, N, K, maxerr_f16(M, N, K), flush=True)

# ---- W4A16 GEMV
def pack(q, Np, Kp):
    out = [0]*(Np//8 * Kp//128 * 32 * 16)
    for nb in range(Np//8):
        for kb in range(Kp//128):
            for lane in range(32):
                g, t = lane >> 2, lane & 3
                for step in range(4):
                    for j in range(4):
                        n = nb*8+g; k = kb*128+step*32+4*t+j
                        lo = q[n, k] & 15; hi = q[n, k+16] & 15
                        out[((nb*(Kp//128)+kb)*32+lane)*16+step*4+j] = lo | (hi << 4)
    return out

def nib2(t):  # nibbles at bits 0..3 and 16..19 -> (q0, q1)
    return (((t & 15) ^ 8) - 8, (((t >> 16) & 15) ^ 8) - 8)

def w4a16_gemv(x, qw, gs, cs, M, N, K, G, kW=8, kU=4):
    Np = (N+7)//8*8; kblocks = K//128
    per_channel = G >= K; SPG = 0 if per_channel else G//32
    y = A2(M, N)
    for blk in range((Np+15)//16):
        nb0 = blk*2; ok1 = (nb0+1)*8 < Np
        red = [A2(16, 8) for _ in range(kW)]
        for w in range(kW):
            total = [[0.0]*4 for _ in range(32)]; part = [[0.0]*4 for _ in range(32)]
            for kb0 in range(w, kblocks, kW*kU):
                for u in range(kU):
                    kb = kb0 + u*kW
                    if kb >= kblocks: break
                    for step in range(4):
                        for half in range(2):
                            A = []; B = []
                            for lane in range(32):
                                g, t = lane >> 2, lane & 3
                                def word(nb):
                                    off = ((nb*kblocks+kb)*32+lane)*16+step*4
                                    return int.from_bytes(bytes(qw[off:off+4]), 'little')
                                q0 = word(nb0) >> (4*half); q1 = word(nb0+1) >> (4*half) if ok1 else 0
                                a0 = nib2(q0 & 0x000F000F); a1 = nib2(q1 & 0x000F000F)
                                a2 = nib2((q0 >> 8) & 0x000F000F); a3 = nib2((q1 >> 8) & 0x000F000F)
                                A.append([a0, a1, a2, a3])
                                kk = kb*128 + step*32 + half*16 + 4*t
                                xv = [x[g, kk+i] if g < M else 0.0 for i in range(4)]
                                B.append([(xv[0], xv[2]), (xv[1], xv[3])])
                            mma(part, A, B)
                        if SPG and (step+1) % SPG == 0:
                            for lane in range(32):
                                g = lane >> 2
                                grp = kb*(4//SPG) + step//SPG
                                col0 = nb0*8+g; col1 = col0+8
                                s0 = gs[grp, col0]; s1 = gs[grp, col1] if ok1 else 0
                                total[lane][0] += s0*part[lane][0]; total[lane][1] += s0*part[lane][1]
                                total[lane][2] += s1*part[lane][2]; total[lane][3] += s1*part[lane][3]
                                part[lane] = [0.0]*4
            if not SPG: total = part
            for l in range(32):
                g, t = l >> 2, l & 3
                red[w][g, 2*t] = total[l][0]; red[w][g, 2*t+1] = total[l][1]; red[w][g+8, 2*t] = total[l][2]; red[w][g+8, 2*t+1] = total[l][3]
        for tid in range(128):
            cl, m = tid >> 3, tid & 7
            c = nb0*8 + cl
            if m >= M or c >= N: continue
            acc = sum(red[w][cl, m] for w in range(kW))
            if not SPG: acc *= gs[0, c]
            y[m, c] = acc*16*cs[c]
    return y

for (M, N, K, G) in [(1, 8, 128, 128), (2, 100, 640, 32), (4, 24, 4608, 128), (3, 40, 512, 512), (1, 56, 384, 64)]:
    Np = (N+7)//8*8
    q = A2(Np, K, 0)
    for n in range(N):
        for k in range(K): q[n,k] = random.randint(-7, 7)
    gs = A2(K//G, Np, 0)
    for g in range(K//G):
        for n in range(N): gs[g,n] = random.randint(1, 15)
    cs = [random.random() if n < N else 0.0 for n in range(Np)]
    x = randn(M, K)
    qw = pack(q, Np, K)
    y = w4a16_gemv(x, qw, gs, cs, M, N, K, G)
    e = 0; big = 1
    for m in range(M):
        for n in range(N):
            ref = sum(x[m,k]*q[n,k]*gs[k//G, n] for k in range(K))*16*cs[n]
            e = max(e, abs(y[m,n]-ref)); big = max(big, abs(ref))
    print("w4a16", M, N, K, G, e/big, flush=True)
