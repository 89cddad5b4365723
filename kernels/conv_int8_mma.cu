// INT8 fused convolution on integer tensor cores, sm_80+ (Ampere, Orin sm_87, Hopper sm_90):
// mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32, ldmatrix from padded shared tiles and a
// STAGES-deep cp.async pipeline of 16-byte loads. The structure is kernels/conv_mma.cu's
// (fp16 m16n8k16): a 32-byte int8 k step has the very register layout of a 16-half one, so
// the same ldmatrix addressing serves both. k runs over (r, s, 64-channel chunk); one warp
// computes 32x32 outputs; a CTA is BM x BN. Needs Cg, x_pix and x_off multiples of 16 (the
// host runs other layers on the dp4a kernels). Layout and epilogue: conv_int8.cuh.
// Split-K: gridDim.z = groups * splits; with splits > 1 (groups == 1) each split writes int32
// partials to ws[split][M][Kg] and conv_i8_splitk_reduce sums them (exact, any order) and
// applies the epilogue; on sm_90 (-DCONV_I8_MMA_CLUSTER=S) the splits are one thread-block
// cluster that sums them in shared memory (cluster.cuh, as conv_mma.cu): one launch.
#include "cluster.cuh"
#include "conv_int8.cuh"
#include "mma_async.cuh"

#define I8_MMA_BK 64                 // int8 channels per k tile (two m16n8k32 steps)
#define I8_MMA_LD (I8_MMA_BK + 16)  // padded row (80 bytes): ldmatrix rows hit 8 bank groups

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
__device__ __forceinline__ void mma_16832(int *d, const unsigned *a, const unsigned *b) {
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// One thread's share of the tile loads: AL pixel rows of A and BL weight rows of B, each one
// 16-byte chunk (channels col..col+16 of the current 64-channel chunk), and the k position.
template <int AL, int BL, int THREADS>
struct I8Loader {
    const s8 *xa[AL];      // image base + group channel offset, per A row
    int ih0[AL], iw0[AL];  // top-left input tap; far negative for rows past M
    const s8 *wb[BL];      // weight row, null past Kg
    int col, r, s, c0;

    static __device__ int ktiles(const ConvI8Params &p) {
        return p.R * p.S * ((p.Cg + I8_MMA_BK - 1) / I8_MMA_BK);
    }

    __device__ void init(const ConvI8Params &p, long long m0, int n0, int g, int kt0) {
        const int tid = threadIdx.x, cchunks = (p.Cg + I8_MMA_BK - 1) / I8_MMA_BK;
        const long long M = (long long)p.N * p.P * p.Q;
        col = (tid & 3) * 16;
#pragma unroll
        for (int i = 0; i < AL; ++i) {
            const long long m = m0 + (tid >> 2) + i * (THREADS / 4);
            int img = 0, oh = 0, ow = 0;
            if (m < M) tx2_decode_pixel(m, p.P, p.Q, img, oh, ow);
            xa[i] = i8_x_image(p, img, g);
            ih0[i] = m < M ? oh * p.sh - p.ph : -(1 << 29);
            iw0[i] = ow * p.sw - p.pw;
        }
#pragma unroll
        for (int j = 0; j < BL; ++j) {
            const int n = n0 + (tid >> 2) + j * (THREADS / 4);
            wb[j] = n < p.Kg ? p.w + (long long)(g * p.Kg + n) * p.R * p.S * p.Cw * 4
                             : nullptr;
        }
        const int rs = kt0 / cchunks;
        c0 = (kt0 % cchunks) * I8_MMA_BK;
        r = rs / p.S;
        s = rs % p.S;
    }

    // Issue the cp.asyncs of the current k tile into (As, Bs), then step to the next tile.
    __device__ void load(const ConvI8Params &p, s8 (*As)[I8_MMA_LD], s8 (*Bs)[I8_MMA_LD]) {
        const int tid = threadIdx.x, c = c0 + col;
        const bool cok = c < p.Cg;
#pragma unroll
        for (int i = 0; i < AL; ++i) {
            const int ih = ih0[i] + r * p.dh, iw = iw0[i] + s * p.dw;
            const bool ok = cok && (unsigned)ih < (unsigned)p.H && (unsigned)iw < (unsigned)p.W;
            const s8 *src = ok ? xa[i] + (long long)(ih * p.W + iw) * p.x_pix + c : p.x;
            cp_async16(&As[(tid >> 2) + i * (THREADS / 4)][col], src, ok);
        }
#pragma unroll
        for (int j = 0; j < BL; ++j) {
            const bool ok = cok && wb[j] != nullptr;
            const s8 *src = ok ? wb[j] + (r * p.S + s) * p.Cw * 4 + c : p.w;
            cp_async16(&Bs[(tid >> 2) + j * (THREADS / 4)][col], src, ok);
        }
        c0 += I8_MMA_BK;
        if (c0 >= p.Cg) {
            c0 = 0;
            if (++s == p.S) {
                s = 0;
                ++r;
            }
        }
    }
};

// One warp's 32x32 outputs += A[wm.., k tile] * B[wn.., k tile]^T (two k32 steps).
__device__ __forceinline__ void i8_mma_tile(const s8 (*As)[I8_MMA_LD],
                                            const s8 (*Bs)[I8_MMA_LD], int (*acc)[4][4],
                                            int wm, int wn, int lane) {
#pragma unroll
    for (int kk = 0; kk < I8_MMA_BK; kk += 32) {
        unsigned a[2][4], b[4][2];
#pragma unroll
        for (int i = 0; i < 2; ++i)
            ldmatrix_x4(a[i], &As[wm + i * 16 + (lane & 15)][kk + (lane >> 4) * 16]);
#pragma unroll
        for (int jp = 0; jp < 2; ++jp) {
            unsigned t[4];
            ldmatrix_x4(t, &Bs[wn + jp * 16 + (lane & 7) + (lane >> 4) * 8]
                                 [kk + ((lane >> 3) & 1) * 16]);
            b[2 * jp][0] = t[0];
            b[2 * jp][1] = t[1];
            b[2 * jp + 1][0] = t[2];
            b[2 * jp + 1][1] = t[3];
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) mma_16832(acc[i][j], a[i], b[j]);
    }
}

// Accumulator fragments to the output (fused epilogue) or to the split-K partials.
__device__ __forceinline__ void i8_mma_store(const ConvI8Params &p, int *ws, int splits,
                                             int split, int g, long long mb, int nb,
                                             int (*acc)[4][4], int lane) {
    const long long M = (long long)p.N * p.P * p.Q;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const long long m = mb + i * 16 + (lane >> 2) + h * 8;
                const int k = nb + j * 8 + (lane & 3) * 2;
                if (m >= M || k >= p.Kg) continue;
                const int n = k + 1 < p.Kg ? 2 : 1;
                if (splits == 1) {
                    i8_store(p, m, g * p.Kg + k, &acc[i][j][2 * h], n);
                    continue;
                }
                int *dst = ws + ((long long)split * M + m) * p.Kg + k;
                dst[0] = acc[i][j][2 * h];
                if (n == 2) dst[1] = acc[i][j][2 * h + 1];
            }
}
#endif

// The int32 accumulators staged in a BM x (BN + 4) tile in shared memory
// (tx2_stage_fragments), then (after a barrier) i8_store_staged: 4 channels a thread and
// step, one copy of the epilogue's code (a fully unrolled one is fetched, not computed, at
// batch 1: kernels/conv_mma.cu's staged epilogue).
template <int BM, int BN, int STAGES>
__host__ __device__ constexpr bool i8_stages_tile() {
    return BM * (BN + 4) * 4 <= STAGES * (BM + BN) * I8_MMA_LD;
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
template <int BM, int BN>
__device__ __forceinline__ void i8_store_staged(const ConvI8Params &p, const int *tile, int g,
                                                long long m0, int n0) {
    constexpr int LD = BN + 4, CHUNKS = BN / 4;
    const long long M = (long long)p.N * p.P * p.Q;
#pragma unroll 1
    for (int idx = threadIdx.x; idx < BM * CHUNKS; idx += blockDim.x) {
        const int row = idx / CHUNKS, col = (idx % CHUNKS) * 4;
        const long long m = m0 + row;
        const int k = n0 + col;
        if (m >= M || k >= p.Kg) continue;
        const int *acc = &tile[row * LD + col];
        if (p.Kg - k < 4 || !i8_store4(p, m, g * p.Kg + k, acc))
            i8_store(p, m, g * p.Kg + k, acc, min(4, p.Kg - k));
    }
}
#endif

// S > 1: one of the S splits of a cluster (cluster.cuh); else the plain kernel.
template <int BM, int BN, int STAGES, int S = 1>
__device__ void conv_i8_mma_body(const ConvI8Params &p, int *ws, int splits) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    // the STAGES-deep A and B tiles; after the k loop a cluster split's int32 tile
    __shared__ __align__(16) unsigned char
        smem[tx2_cluster_smem<BM, BN, S>(STAGES * (BM + BN) * I8_MMA_LD)];
    auto As = reinterpret_cast<s8 (*)[BM][I8_MMA_LD]>(smem);
    auto Bs = reinterpret_cast<s8 (*)[BN][I8_MMA_LD]>(smem + STAGES * BM * I8_MMA_LD);
    constexpr int THREADS = BM * BN / 32;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = blockIdx.z % p.groups, split = blockIdx.z / p.groups;
    const long long m0 = (long long)blockIdx.x * BM;
    const int n0 = blockIdx.y * BN;
    I8Loader<BM * 4 / THREADS, BN * 4 / THREADS, THREADS> ld;
    const int ktiles = ld.ktiles(p), per = (ktiles + splits - 1) / splits, kt0 = split * per;
    const int nk = min(ktiles, kt0 + per) - kt0;
    ld.init(p, m0, n0, g, kt0);
    const int wm = (warp / (BN / 32)) * 32, wn = (warp % (BN / 32)) * 32;
    int acc[2][4][4] = {};
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (st < nk) ld.load(p, As[st], Bs[st]);
        cp_async_commit();
    }
    for (int t = 0; t < nk; ++t) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();  // tile t landed for all; stage (t - 1) % STAGES is free again
        const int next = t + STAGES - 1;
        if (next < nk) ld.load(p, As[next % STAGES], Bs[next % STAGES]);
        cp_async_commit();
        i8_mma_tile(As[t % STAGES], Bs[t % STAGES], acc, wm, wn, lane);
    }
#if defined(CONV_I8_MMA_CLUSTER)
    if constexpr (S > 1) {
        cp_async_wait<0>();
        __syncthreads();  // the pipeline's shared memory becomes the int32 tile
        tx2_cluster_reduce<BM, BN, S>(
            reinterpret_cast<int *>(smem), (long long)p.N * p.P * p.Q, p.Kg, m0, n0, wm, wn,
            acc, lane, [&](long long m, int k, const int *v, bool two) {
                i8_store(p, m, k, v, two ? 2 : 1);
            });
        return;
    }
#endif
    if constexpr (S == 1 && i8_stages_tile<BM, BN, STAGES>()) {
        if (splits == 1) {
            int *tile = reinterpret_cast<int *>(smem);
            cp_async_wait<0>();
            __syncthreads();  // the pipeline's shared memory becomes the staged tile
            tx2_stage_fragments<BN + 4>(tile, acc, wm, wn, lane);
            __syncthreads();
            i8_store_staged<BM, BN>(p, tile, g, m0, n0);
            return;
        }
    }
    i8_mma_store(p, ws, splits, split, g, m0 + wm, n0 + wn, acc, lane);
#else
    __trap();  // the host launches this path only from sm_80
#endif
}

#define CONV_I8_MMA_KERNEL(BM, BN, STAGES)                                                     \
    extern "C" __global__ void __launch_bounds__(BM * BN / 32, 1)                               \
        conv_i8_mma_##BM##x##BN(ConvI8Params p, int *ws, int splits) {                        \
        conv_i8_mma_body<BM, BN, STAGES>(p, ws, splits);                                       \
    }

// -DCONV_I8_MMA_CLUSTER=S (sm_90): only the split-K kernels of S splits a cluster, ``..._cl``,
// of the tiles whose int32 tile fits 48 KB (lower_conv.cluster_fits: all but 128x128).
#if defined(CONV_I8_MMA_CLUSTER) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900)
#define CONV_I8_MMA_CL_KERNEL(BM, BN, STAGES)                                                  \
    extern "C" __global__ void __launch_bounds__(BM * BN / 32, 1)                               \
        __cluster_dims__(1, 1, CONV_I8_MMA_CLUSTER)                                            \
        conv_i8_mma_##BM##x##BN##_cl(ConvI8Params p, int *ws, int splits) {                  \
        conv_i8_mma_body<BM, BN, STAGES, CONV_I8_MMA_CLUSTER>(p, ws, splits);                  \
    }
CONV_I8_MMA_CL_KERNEL(64, 64, 3)
CONV_I8_MMA_CL_KERNEL(128, 64, 3)
CONV_I8_MMA_CL_KERNEL(64, 128, 3)
#else
// The tiles of kernels/conv_mma.cu (lower_conv.MMA_TILES); static shared memory < 48 KB.
CONV_I8_MMA_KERNEL(64, 64, 3)
CONV_I8_MMA_KERNEL(128, 64, 3)
CONV_I8_MMA_KERNEL(64, 128, 3)
CONV_I8_MMA_KERNEL(128, 128, 2)
#endif

// Sum the int32 split-K partials, then the fused epilogue (two channels a thread).
extern "C" __global__ void conv_i8_splitk_reduce(ConvI8Params p, const int *ws, int splits) {
    const long long M = (long long)p.N * p.P * p.Q;
    const int kp = (p.Kg + 1) / 2;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < M * kp;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long m = idx / kp;
        const int k = (int)(idx % kp) * 2, n = k + 1 < p.Kg ? 2 : 1;
        int v[2] = {0, 0};
        for (int s = 0; s < splits; ++s) {
            const int *src = ws + ((long long)s * M + m) * p.Kg + k;
            v[0] += src[0];
            if (n == 2) v[1] += src[1];
        }
        i8_store(p, m, k, v, n);
    }
}
