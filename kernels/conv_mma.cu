// Tensor-core fused convolution for sm_80+ (Ampere, Orin, Hopper), NHWC FP16, FP32 accumulation.
// Implicit GEMM (M = N*P*Q pixels, N = Kg channels, K = R*S*Cg) with mma.sync.m16n8k16,
// ldmatrix from padded shared tiles and a STAGES-deep cp.async pipeline of 16-byte loads.
// The k loop runs over (r, s, 32-channel chunk) flattened, so 1x1 and 3x3 layers both stream
// one long pipelined loop. One warp computes 32x32 outputs; a CTA is BM x BN.
// conv_mma_<BM>x<BN> needs Cg, x_pix and x_off multiples of 8 (16-byte rows);
// conv_mma_gather_<BM>x<BN> takes any layer (2-byte gathers, for 3-channel stems).
// Split-K: gridDim.z = groups * splits; with splits > 1 (groups == 1) each split writes FP32
// partials to ws[split][M][Kg], and conv_splitk_reduce sums them and applies the epilogue.
// On sm_90 (-DCONV_MMA_CLUSTER=S) the S splits of a tile are one thread-block cluster instead
// (cluster.cuh): one launch, no workspace, the same sum order as conv_splitk_reduce.
// With -DCONV_MMA_LN=C (sm_90) the kernels are ``..._ln``: a GEMM whose C CTAs along y, one
// cluster, hold whole output rows and LayerNorm them in the epilogue (linear_norm.cuh).
#include "cluster.cuh"
#include "conv.cuh"
#include "linear_norm.cuh"
#include "mma_async.cuh"

#define MMA_BK 32
#define MMA_LD (MMA_BK + 8)  // padded row (80 bytes): the 8 rows of an ldmatrix hit 8 bank groups

// Where a fused 2x2 stride-2 MaxPool writes (kernels ``conv_mma*_pool_*``, whose last four
// arguments these are): z at pooled pixel t, channel k is z[t * z_pix + z_off + k]; keep:
// also store the conv's own output y.
struct PoolOut {
    half *z;
    int z_pix, z_off, keep;
};

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
__device__ __forceinline__ void mma_16816(float *d, const unsigned *a, const unsigned *b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// One thread's share of the tile loads: AL pixel rows of A and BL weight rows of B, each one
// 16-byte chunk (channels col..col+8 of the current 32-channel chunk), and the k position.
// POOL: GEMM rows in 2x2-window order (conv_row_pixel).
template <int AL, int BL, int THREADS, bool POOL = false>
struct MmaLoader {
    const half *xa[AL];  // image base + group channel offset, per A row
    int ih0[AL], iw0[AL];  // top-left input tap; far negative for rows past M
    const half *wb[BL];  // weight row, null past Kg
    int col, r, s, c0;
    // A 1x1, stride-1, unpadded layer (a GEMM): xa[i] is pixel row i itself (null past M),
    // so no pixel decoding and no tap bounds
    bool flat;

    // k tiles of the layer: (r, s, 32-channel chunk)
    static __device__ int ktiles(const ConvParams &p) {
        return p.R * p.S * ((p.Cg + MMA_BK - 1) / MMA_BK);
    }

    __device__ void init(const ConvParams &p, long long m0, int n0, int g, int kt0) {
        const int tid = threadIdx.x, cchunks = (p.Cg + MMA_BK - 1) / MMA_BK;
        const long long M = (long long)p.N * p.P * p.Q;
        col = (tid & 3) * 8;
        flat = p.R == 1 && p.S == 1 && p.sh == 1 && p.sw == 1 && p.ph == 0 && p.pw == 0 &&
               p.H == p.P && p.W == p.Q;
#pragma unroll
        for (int i = 0; i < AL; ++i) {
            const long long m = m0 + (tid >> 2) + i * (THREADS / 4);
            if (flat) {
                xa[i] = m < M ? p.x + p.x_off + g * p.Cg + conv_row_pixel<POOL>(p, m) * p.x_pix
                              : nullptr;
                continue;
            }
            int img = 0, oh = 0, ow = 0;
            if (m < M) decode_row<POOL>(p, m, img, oh, ow);
            xa[i] = conv_x_image(p, img, g);
            ih0[i] = m < M ? oh * p.sh - p.ph : -(1 << 29);
            iw0[i] = ow * p.sw - p.pw;
        }
#pragma unroll
        for (int j = 0; j < BL; ++j) {
            const int n = n0 + (tid >> 2) + j * (THREADS / 4);
            wb[j] = n < p.Kg ? conv_w_row(p, g * p.Kg + n) : nullptr;
        }
        const int rs = kt0 / cchunks;
        c0 = (kt0 % cchunks) * MMA_BK;
        r = rs / p.S;
        s = rs % p.S;
    }

    // Issue the cp.asyncs of the current k tile into (As, Bs), then step to the next tile.
    __device__ void load(const ConvParams &p, half (*As)[MMA_LD], half (*Bs)[MMA_LD]) {
        const int tid = threadIdx.x, c = c0 + col;
        const bool cok = c < p.Cg;
#pragma unroll
        for (int i = 0; i < AL; ++i) {
            bool ok;
            const half *src;
            if (flat) {
                ok = cok && xa[i] != nullptr;
                src = ok ? xa[i] + c : p.x;
            } else {
                const int ih = ih0[i] + r * p.dh, iw = iw0[i] + s * p.dw;
                ok = cok && (unsigned)ih < (unsigned)p.H && (unsigned)iw < (unsigned)p.W;
                src = ok ? xa[i] + (long long)(ih * p.W + iw) * p.x_pix + c : p.x;
            }
            cp_async16(&As[(tid >> 2) + i * (THREADS / 4)][col], src, ok);
        }
#pragma unroll
        for (int j = 0; j < BL; ++j) {
            const bool ok = cok && wb[j] != nullptr;
            const half *src = ok ? wb[j] + (r * p.S + s) * p.Cg + c : p.w;
            cp_async16(&Bs[(tid >> 2) + j * (THREADS / 4)][col], src, ok);
        }
        c0 += MMA_BK;
        if (c0 >= p.Cg) {
            c0 = 0;
            if (++s == p.S) {
                s = 0;
                ++r;
            }
        }
    }
};

// The loader of layers whose channels are not 16-byte rows (a 3-channel stem): k runs over
// (r, s, c) flattened with no padding, gathered by 2-byte loads and plain shared stores.
// Each thread fills part of one A row (1024 / BN halves) and of one B row (1024 / BM).
template <int BM, int BN, bool POOL = false>
struct GatherLoader {
    static constexpr int EA = 1024 / BN, EB = 1024 / BM;
    const half *xa, *wb;
    int ih0, iw0, kt;

    static __device__ int ktiles(const ConvParams &p) {
        return (p.R * p.S * p.Cg + MMA_BK - 1) / MMA_BK;
    }

    __device__ void init(const ConvParams &p, long long m0, int n0, int g, int kt0) {
        const long long M = (long long)p.N * p.P * p.Q, m = m0 + threadIdx.x / (32 / EA);
        int img = 0, oh = 0, ow = 0;
        if (m < M) decode_row<POOL>(p, m, img, oh, ow);
        xa = conv_x_image(p, img, g);
        ih0 = m < M ? oh * p.sh - p.ph : -(1 << 29);
        iw0 = ow * p.sw - p.pw;
        const int n = n0 + threadIdx.x / (32 / EB);
        wb = n < p.Kg ? conv_w_row(p, g * p.Kg + n) : nullptr;
        kt = kt0;
    }

    __device__ void load(const ConvParams &p, half (*As)[MMA_LD], half (*Bs)[MMA_LD]) {
        const int ktot = p.R * p.S * p.Cg, tid = threadIdx.x;
        const int ka = kt * MMA_BK + (tid % (32 / EA)) * EA;
        int rs = ka / p.Cg, c = ka % p.Cg;
        int r = rs / p.S, s = rs % p.S;
        half *da = &As[tid / (32 / EA)][(tid % (32 / EA)) * EA];
#pragma unroll
        for (int e = 0; e < EA; ++e) {
            const int ih = ih0 + r * p.dh, iw = iw0 + s * p.dw;
            const bool ok = ka + e < ktot && (unsigned)ih < (unsigned)p.H &&
                            (unsigned)iw < (unsigned)p.W;
            da[e] = ok ? xa[(long long)(ih * p.W + iw) * p.x_pix + c] : __float2half(0.f);
            if (++c == p.Cg) {
                c = 0;
                if (++s == p.S) {
                    s = 0;
                    ++r;
                }
            }
        }
        const int kb = kt * MMA_BK + (tid % (32 / EB)) * EB;
        half *db = &Bs[tid / (32 / EB)][(tid % (32 / EB)) * EB];
#pragma unroll
        for (int e = 0; e < EB; ++e)
            db[e] = (wb && kb + e < ktot) ? wb[kb + e] : __float2half(0.f);
        ++kt;
    }
};

// One warp's 32x32 outputs += A[wm.., k tile] * B[wn.., k tile]^T (two k16 steps).
__device__ __forceinline__ void mma_tile(const half (*As)[MMA_LD], const half (*Bs)[MMA_LD],
                                         float (*acc)[4][4], int wm, int wn, int lane) {
#pragma unroll
    for (int kk = 0; kk < MMA_BK; kk += 16) {
        unsigned a[2][4], b[4][2];
#pragma unroll
        for (int i = 0; i < 2; ++i)
            ldmatrix_x4(a[i], &As[wm + i * 16 + (lane & 15)][kk + (lane >> 4) * 8]);
#pragma unroll
        for (int jp = 0; jp < 2; ++jp) {
            unsigned t[4];
            ldmatrix_x4(t, &Bs[wn + jp * 16 + (lane & 7) + (lane >> 4) * 8]
                              [kk + ((lane >> 3) & 1) * 8]);
            b[2 * jp][0] = t[0];
            b[2 * jp][1] = t[1];
            b[2 * jp + 1][0] = t[2];
            b[2 * jp + 1][1] = t[3];
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) mma_16816(acc[i][j], a[i], b[j]);
    }
}

// Accumulator fragments to the output (fused epilogue, half2 stores) or to split partials.
__device__ __forceinline__ void mma_store(const ConvParams &p, float *ws, int splits, int split,
                                          int g, long long mb, int nb, float (*acc)[4][4],
                                          int lane) {
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
                const float v0 = acc[i][j][2 * h], v1 = acc[i][j][2 * h + 1];
                const bool two = k + 1 < p.Kg;
                if (splits == 1) {
                    conv_store2(p, m, g * p.Kg + k, v0, v1, two);
                    continue;
                }
                float *dst = ws + ((long long)split * M + m) * p.Kg + k;
                if (two && !(p.Kg & 1)) {
                    *reinterpret_cast<float2 *>(dst) = make_float2(v0, v1);
                } else {
                    dst[0] = v0;
                    if (two) dst[1] = v1;
                }
            }
}

// A CTA staging its accumulators: BM x (BN + 4) FP32 (rows 16-byte aligned, 4 words of pad),
// when that fits in the k loop's pipeline buffers.
template <int BM, int BN, int STAGES>
__host__ __device__ constexpr bool mma_stages_tile() {
    return BM * (BN + 4) * 4 <= STAGES * (BM + BN) * MMA_LD * 2;
}

// The staged BM x BN tile at (m0, n0) of group g to the output, 8 channels per thread and
// step (conv_store8): one copy of the epilogue's code, 16-byte stores.
template <int BM, int BN>
__device__ __forceinline__ void mma_store_staged(const ConvParams &p, const float *tile, int g,
                                                 long long m0, int n0) {
    constexpr int LD = BN + 4, CHUNKS = BN / 8;
    const long long M = (long long)p.N * p.P * p.Q;
#pragma unroll 1
    for (int idx = threadIdx.x; idx < BM * CHUNKS; idx += blockDim.x) {
        const int row = idx / CHUNKS, col = (idx % CHUNKS) * 8;
        const long long m = m0 + row;
        const int k = n0 + col;
        if (m < M && k < p.Kg)
            conv_store8(p, m, g * p.Kg + k, p.Kg - k, &tile[row * LD + col]);
    }
}

// One 2x2 window (GEMM rows m..m + 3) at channels kk.. (``n`` <= 8, of all groups):
// ``sums(j, v)`` gives row m + j's 8 FP32 sums; each row through the epilogue (to y with
// keep), their maximum to z. FP16 rounding is monotonic, so this is the max of the FP16 conv
// outputs that a separate MaxPool would take.
template <class Sums>
__device__ __forceinline__ void mma_pool_window(const ConvParams &p, const PoolOut &o,
                                                long long m, int kk, int n, Sums sums) {
    float best[8], v[8], acc[8];
#pragma unroll 1
    for (int j = 0; j < 4; ++j) {
        const long long pix = conv_row_pixel<true>(p, m + j);
        sums(j, acc);
        conv_values8(p, pix, kk, n, acc, v);
        if (o.keep) conv_put8(p.y + pix * p.y_pix + p.y_off + kk, n, v);
#pragma unroll
        for (int e = 0; e < 8; ++e) best[e] = j ? fmaxf(best[e], v[e]) : v[e];
    }
    conv_put8(o.z + (m >> 2) * o.z_pix + o.z_off + kk, n, best);
}

// The staged BM x BN tile (rows in 2x2-window order) to the pooled output, 8 channels of one
// window per thread and step (mma_pool_window).
template <int BM, int BN>
__device__ __forceinline__ void mma_store_pooled(const ConvParams &p, const PoolOut &o,
                                                 const float *tile, int g, long long m0,
                                                 int n0) {
    constexpr int LD = BN + 4, CHUNKS = BN / 8;
    const long long M = (long long)p.N * p.P * p.Q;
#pragma unroll 1
    for (int idx = threadIdx.x; idx < BM / 4 * CHUNKS; idx += blockDim.x) {
        const int quad = idx / CHUNKS, col = (idx % CHUNKS) * 8;
        const long long m = m0 + 4 * quad;
        const int k = n0 + col;
        if (m >= M || k >= p.Kg) continue;
        mma_pool_window(p, o, m, g * p.Kg + k, min(8, p.Kg - k), [&](int j, float *acc) {
            const float *row = &tile[(4 * quad + j) * LD + col];
#pragma unroll
            for (int e = 0; e < 8; ++e) acc[e] = row[e];
        });
    }
}

#if defined(CONV_MMA_CLUSTER) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900)
// Shared words of mma_store_pooled_cluster: the staged tile and this CTA's windows' sums.
template <int BM, int BN, int S>
__host__ __device__ constexpr int mma_pooled_cluster_words() {
    return (BM + (BM / 4 + S - 1) / S * 4) * (BN + 4);
}

// mma_store_pooled for the S splits of a cluster (cluster.cuh): each split stages its tile;
// CTA r sums the rows of windows r, r + S, ... over the S tiles (split order, two words a
// thread, as tx2_cluster_reduce) into ``red``'s second part, then stores those windows.
// (Splits only where groups == 1.)
template <int BM, int BN, int S>
__device__ __forceinline__ void mma_store_pooled_cluster(const ConvParams &p, const PoolOut &o,
                                                         float *red, long long m0, int n0,
                                                         int wm, int wn, float (*acc)[4][4],
                                                         int lane) {
    constexpr int LD = BN + 4, CHUNKS = BN / 8, PAIRS = BN / 2, QUADS = (BM / 4 + S - 1) / S;
    const long long M = (long long)p.N * p.P * p.Q;
    float *sums = red + BM * LD;  // QUADS * 4 rows: this CTA's windows, summed
    tx2_stage_fragments<LD>(red, acc, wm, wn, lane);
    tx2_cluster_sync();  // every split's tile is in its shared memory
    const unsigned rank = tx2_cluster_rank();
#pragma unroll 1
    for (int idx = threadIdx.x; idx < QUADS * 4 * PAIRS; idx += blockDim.x) {
        const int local = idx / PAIRS, col = (idx % PAIRS) * 2;
        const int row = ((local >> 2) * S + rank) * 4 + (local & 3);
        if (row >= BM) continue;
        float v0 = 0.f, v1 = 0.f;
#pragma unroll
        for (int q = 0; q < S; ++q) {
            const uint2 t = tx2_cluster_load2(&red[row * LD + col], q);
            v0 += __uint_as_float(t.x);
            v1 += __uint_as_float(t.y);
        }
        sums[local * LD + col] = v0;
        sums[local * LD + col + 1] = v1;
    }
    __syncthreads();  // this CTA's window sums are in place
#pragma unroll 1
    for (int idx = threadIdx.x; idx < QUADS * CHUNKS; idx += blockDim.x) {
        const int local = idx / CHUNKS, col = (idx % CHUNKS) * 8;
        const int quad = local * S + rank;
        const long long m = m0 + 4 * quad;
        const int k = n0 + col;
        if (quad >= BM / 4 || m >= M || k >= p.Kg) continue;
        mma_pool_window(p, o, m, k, min(8, p.Kg - k), [&](int j, float *sum) {
            const float *row = &sums[(4 * local + j) * LD + col];
#pragma unroll
            for (int e = 0; e < 8; ++e) sum[e] = row[e];
        });
    }
    tx2_cluster_sync();  // no CTA leaves while another still reads its tile
}
#endif
#endif

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
template <bool C, class T, class F>
struct PickType {
    using type = T;
};
template <class T, class F>
struct PickType<false, T, F> {
    using type = F;
};

#define MMA_LOADER(BM, BN, GATHER, POOL)                                                       \
    typename PickType<GATHER, GatherLoader<BM, BN, POOL>,                                      \
                      MmaLoader<BM * 4 / (BM * BN / 32), BN * 4 / (BM * BN / 32),              \
                                BM * BN / 32, POOL>>::type
#endif

// S > 1: one of the S splits of a cluster (cluster.cuh); LN > 0: one of the LN CTAs of a
// row-normalising cluster (linear_norm.cuh, ``ln`` its parameters); POOL: a 2x2 stride-2
// MaxPool fused into the epilogue (``pool``; one split, a staged tile); else the plain kernel.
template <int BM, int BN, int STAGES, bool GATHER, int S = 1, int LN = 0, bool POOL = false>
__device__ void conv_mma_body(const ConvParams &p, float *ws, int splits,
                              const LnParams *ln = nullptr, const PoolOut *pool = nullptr) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    // the STAGES-deep A and B tiles; after the k loop a cluster split's FP32 tile
    __shared__ __align__(16) unsigned char
        smem[tx2_cluster_smem<BM, BN, S>(STAGES * (BM + BN) * MMA_LD * 2)];
    auto As = reinterpret_cast<half (*)[BM][MMA_LD]>(smem);
    auto Bs = reinterpret_cast<half (*)[BN][MMA_LD]>(smem + STAGES * BM * MMA_LD * 2);
    tx2_grid_wait();  // the layer before (and the shared split-K workspace) is done
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = blockIdx.z % p.groups, split = blockIdx.z / p.groups;
    const long long m0 = (long long)blockIdx.x * BM;
    const int n0 = blockIdx.y * BN;
    MMA_LOADER(BM, BN, GATHER, POOL) ld;
    const int ktiles = ld.ktiles(p), per = (ktiles + splits - 1) / splits, kt0 = split * per;
    const int nk = min(ktiles, kt0 + per) - kt0;
    ld.init(p, m0, n0, g, kt0);
    const int wm = (warp / (BN / 32)) * 32, wn = (warp % (BN / 32)) * 32;
    float acc[2][4][4] = {};
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
        mma_tile(As[t % STAGES], Bs[t % STAGES], acc, wm, wn, lane);
    }
    tx2_grid_release();  // the next kernel may launch; it waits for this one to finish
#if defined(CONV_MMA_CLUSTER)
    if constexpr (S > 1 && !POOL) {
        cp_async_wait<0>();
        __syncthreads();  // the pipeline's shared memory becomes the FP32 tile
        tx2_cluster_reduce<BM, BN, S>(
            reinterpret_cast<float *>(smem), (long long)p.N * p.P * p.Q, p.Kg, m0, n0, wm, wn,
            acc, lane, [&](long long m, int k, const float *v, bool two) {
                conv_store2(p, m, k, v[0], v[1], two);
            });
        return;
    }
#endif
#if defined(CONV_MMA_LN) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900)
    if constexpr (LN > 0) {
        if constexpr (mma_stages_tile<BM, BN, STAGES>()) {
            float *tile = reinterpret_cast<float *>(smem);
            cp_async_wait<0>();
            __syncthreads();  // the pipeline's shared memory becomes the staged tile
            tx2_stage_fragments<BN + 4>(tile, acc, wm, wn, lane);
            __syncthreads();
            ln_store_staged<BM, BN, LN>(p, *ln, tile, m0, n0);
        } else {
            ln_store<BM, BN, LN>(p, *ln, m0, n0, wm, wn, acc, lane);
        }
        return;
    }
#endif
#if defined(CONV_MMA_CLUSTER)
    if constexpr (POOL && S > 1) {
        static_assert(mma_pooled_cluster_words<BM, BN, S>() * 4 <= sizeof(smem),
                      "the pooled cluster epilogue's tiles fit the pipeline's shared memory");
        cp_async_wait<0>();
        __syncthreads();  // the pipeline's shared memory becomes the FP32 tile
        mma_store_pooled_cluster<BM, BN, S>(p, *pool, reinterpret_cast<float *>(smem), m0, n0,
                                            wm, wn, acc, lane);
        return;
    }
#endif
    if constexpr (mma_stages_tile<BM, BN, STAGES>()) {
        if (splits == 1) {  // (a pooled kernel here always: its one pass)
            float *tile = reinterpret_cast<float *>(smem);
            cp_async_wait<0>();
            __syncthreads();  // the pipeline's shared memory becomes the staged tile
            tx2_stage_fragments<BN + 4>(tile, acc, wm, wn, lane);
            __syncthreads();
            if constexpr (POOL)
                mma_store_pooled<BM, BN>(p, *pool, tile, g, m0, n0);
            else
                mma_store_staged<BM, BN>(p, tile, g, m0, n0);
            return;
        }
    }
    if constexpr (POOL) {
        __trap();  // the host fuses a pool only into tiles that stage (mma_stages_tile)
        return;
    }
    mma_store(p, ws, splits, split, g, m0 + wm, n0 + wn, acc, lane);
#else
    __trap();  // the host launches this path only from sm_80
#endif
}

// -DCONV_MMA_GATHER=0 builds only the 16-byte-row kernels, =1 only the gather ones (a graph
// compiles the loaders it uses, side by side); without it, both.
#if !defined(CONV_MMA_GATHER) || CONV_MMA_GATHER == 0
#define CONV_MMA_ROWS_KERNEL(BM, BN, STAGES)                                                   \
    extern "C" __global__ void __launch_bounds__(BM * BN / 32, 1)                               \
        conv_mma_##BM##x##BN(ConvParams p, float *ws, int splits) {                           \
        conv_mma_body<BM, BN, STAGES, false>(p, ws, splits);                                   \
    }
#else
#define CONV_MMA_ROWS_KERNEL(BM, BN, STAGES)
#endif
#if !defined(CONV_MMA_GATHER) || CONV_MMA_GATHER == 1
#define CONV_MMA_GATHER_KERNEL(BM, BN, STAGES)                                                 \
    extern "C" __global__ void __launch_bounds__(BM * BN / 32, 1)                               \
        conv_mma_gather_##BM##x##BN(ConvParams p, float *ws, int splits) {                    \
        conv_mma_body<BM, BN, STAGES, true>(p, ws, splits);                                    \
    }
#else
#define CONV_MMA_GATHER_KERNEL(BM, BN, STAGES)
#endif
#define CONV_MMA_KERNEL(BM, BN, STAGES)                                                        \
    CONV_MMA_ROWS_KERNEL(BM, BN, STAGES)                                                       \
    CONV_MMA_GATHER_KERNEL(BM, BN, STAGES)

// -DCONV_MMA_CLUSTER=S (sm_90): the split-K kernels of S splits a cluster, ``..._cl``. The
// cluster is the S CTAs along z (gridDim.z == S: splits only where groups == 1).
#if defined(CONV_MMA_CLUSTER) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900)
#undef CONV_MMA_KERNEL
#if !defined(CONV_MMA_GATHER) || CONV_MMA_GATHER == 0
#define CONV_MMA_CL_ROWS(BM, BN, STAGES)                                                       \
    extern "C" __global__ void __launch_bounds__(BM * BN / 32, 1)                               \
        __cluster_dims__(1, 1, CONV_MMA_CLUSTER)                                               \
        conv_mma_##BM##x##BN##_cl(ConvParams p, float *ws, int splits) {                     \
        conv_mma_body<BM, BN, STAGES, false, CONV_MMA_CLUSTER>(p, ws, splits);                 \
    }
#else
#define CONV_MMA_CL_ROWS(BM, BN, STAGES)
#endif
#if !defined(CONV_MMA_GATHER) || CONV_MMA_GATHER == 1
#define CONV_MMA_CL_GATHER(BM, BN, STAGES)                                                     \
    extern "C" __global__ void __launch_bounds__(BM * BN / 32, 1)                               \
        __cluster_dims__(1, 1, CONV_MMA_CLUSTER)                                               \
        conv_mma_gather_##BM##x##BN##_cl(ConvParams p, float *ws, int splits) {              \
        conv_mma_body<BM, BN, STAGES, true, CONV_MMA_CLUSTER>(p, ws, splits);                  \
    }
#else
#define CONV_MMA_CL_GATHER(BM, BN, STAGES)
#endif
#define CONV_MMA_KERNEL(BM, BN, STAGES)                                                        \
    CONV_MMA_CL_ROWS(BM, BN, STAGES)                                                           \
    CONV_MMA_CL_GATHER(BM, BN, STAGES)
#endif

// -DCONV_MMA_LN=C (sm_90, 16-byte rows only): the kernels ``..._ln`` whose grid along y is one
// cluster of C CTAs holding whole rows, LayerNormed in the epilogue (no split-K).
#if defined(CONV_MMA_LN) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900)
#undef CONV_MMA_KERNEL
#define CONV_MMA_KERNEL(BM, BN, STAGES)                                                        \
    extern "C" __global__ void __launch_bounds__(BM * BN / 32, 1)                               \
        __cluster_dims__(1, CONV_MMA_LN, 1)                                                    \
        conv_mma_##BM##x##BN##_ln(ConvParams p, const float *gamma, const float *beta,       \
                                  half *ln_y, int ln_pix, float eps) {                         \
        const LnParams ln = {gamma, beta, ln_y, ln_pix, eps};                                  \
        conv_mma_body<BM, BN, STAGES, false, 1, CONV_MMA_LN>(p, nullptr, 1, &ln);             \
    }
#endif

// -DCONV_MMA_POOL (sm_80+): the kernels ``conv_mma[_gather]_pool_<BM>x<BN>``, a 2x2 stride-2
// MaxPool fused into the epilogue (one split; PoolOut says where the pooled map goes).
#if defined(CONV_MMA_POOL)
#undef CONV_MMA_KERNEL
#if !defined(CONV_MMA_GATHER) || CONV_MMA_GATHER == 0
#define CONV_MMA_POOL_ROWS(BM, BN, STAGES)                                                     \
    extern "C" __global__ void __launch_bounds__(BM * BN / 32, 1)                               \
        conv_mma_pool_##BM##x##BN(ConvParams p, float *ws, int splits, half *z, int z_pix,    \
                                  int z_off, int keep) {                                       \
        const PoolOut o = {z, z_pix, z_off, keep};                                             \
        conv_mma_body<BM, BN, STAGES, false, 1, 0, true>(p, ws, 1, nullptr, &o);              \
    }
#else
#define CONV_MMA_POOL_ROWS(BM, BN, STAGES)
#endif
#if !defined(CONV_MMA_GATHER) || CONV_MMA_GATHER == 1
#define CONV_MMA_POOL_GATHER(BM, BN, STAGES)                                                   \
    extern "C" __global__ void __launch_bounds__(BM * BN / 32, 1)                               \
        conv_mma_gather_pool_##BM##x##BN(ConvParams p, float *ws, int splits, half *z,        \
                                         int z_pix, int z_off, int keep) {                     \
        const PoolOut o = {z, z_pix, z_off, keep};                                             \
        conv_mma_body<BM, BN, STAGES, true, 1, 0, true>(p, ws, 1, nullptr, &o);               \
    }
#else
#define CONV_MMA_POOL_GATHER(BM, BN, STAGES)
#endif
#define CONV_MMA_KERNEL(BM, BN, STAGES)                                                        \
    CONV_MMA_POOL_ROWS(BM, BN, STAGES)                                                         \
    CONV_MMA_POOL_GATHER(BM, BN, STAGES)
// With -DCONV_MMA_CLUSTER=S too (sm_90): ``..._pool_<BM>x<BN>_cl``, S splits a cluster.
#if defined(CONV_MMA_CLUSTER) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900)
#undef CONV_MMA_KERNEL
#if !defined(CONV_MMA_GATHER) || CONV_MMA_GATHER == 0
#define CONV_MMA_POOL_CL_ROWS(BM, BN, STAGES)                                                  \
    extern "C" __global__ void __launch_bounds__(BM * BN / 32, 1)                               \
        __cluster_dims__(1, 1, CONV_MMA_CLUSTER)                                               \
        conv_mma_pool_##BM##x##BN##_cl(ConvParams p, float *ws, int splits, half *z,          \
                                       int z_pix, int z_off, int keep) {                       \
        const PoolOut o = {z, z_pix, z_off, keep};                                             \
        conv_mma_body<BM, BN, STAGES, false, CONV_MMA_CLUSTER, 0, true>(p, ws, splits,        \
                                                                           nullptr, &o);       \
    }
#else
#define CONV_MMA_POOL_CL_ROWS(BM, BN, STAGES)
#endif
#if !defined(CONV_MMA_GATHER) || CONV_MMA_GATHER == 1
#define CONV_MMA_POOL_CL_GATHER(BM, BN, STAGES)                                                \
    extern "C" __global__ void __launch_bounds__(BM * BN / 32, 1)                               \
        __cluster_dims__(1, 1, CONV_MMA_CLUSTER)                                               \
        conv_mma_gather_pool_##BM##x##BN##_cl(ConvParams p, float *ws, int splits, half *z,   \
                                              int z_pix, int z_off, int keep) {                \
        const PoolOut o = {z, z_pix, z_off, keep};                                             \
        conv_mma_body<BM, BN, STAGES, true, CONV_MMA_CLUSTER, 0, true>(p, ws, splits,         \
                                                                          nullptr, &o);        \
    }
#else
#define CONV_MMA_POOL_CL_GATHER(BM, BN, STAGES)
#endif
#define CONV_MMA_KERNEL(BM, BN, STAGES)                                                        \
    CONV_MMA_POOL_CL_ROWS(BM, BN, STAGES)                                                      \
    CONV_MMA_POOL_CL_GATHER(BM, BN, STAGES)
#endif
#endif

// One build may hold a single tile (-DCONV_MMA_TILE=BM*1000+BN): the backend compiles the
// tiles a graph uses as separate modules, side by side. Without it, every tile is built.
#ifdef CONV_MMA_TILE
#define CONV_MMA_WANT(BM, BN) (CONV_MMA_TILE == (BM) * 1000 + (BN))
#else
#define CONV_MMA_WANT(BM, BN) 1
#endif

// Static shared memory stays under 48 KB: (BM + BN) * 80 bytes per stage (64x64: four stages,
// for the few-CTA GEMMs of batch 1 whose k loop waits on memory latency).
#if CONV_MMA_WANT(64, 64)
CONV_MMA_KERNEL(64, 64, 4)
#endif
#if CONV_MMA_WANT(128, 64)
CONV_MMA_KERNEL(128, 64, 3)
#endif
#if CONV_MMA_WANT(64, 128)
CONV_MMA_KERNEL(64, 128, 3)
#endif
#if CONV_MMA_WANT(128, 128)
CONV_MMA_KERNEL(128, 128, 2)
#endif

// Sum the split-K partials in split order (deterministic), then the fused epilogue.
extern "C" __global__ void conv_splitk_reduce(ConvParams p, const float *ws, int splits) {
    tx2_grid_wait();
    tx2_grid_release();
    const long long M = (long long)p.N * p.P * p.Q;
    const int kp = (p.Kg + 1) / 2;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < M * kp;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long m = idx / kp;
        const int k = (int)(idx % kp) * 2;
        const bool two = k + 1 < p.Kg;
        float v0 = 0.f, v1 = 0.f;
        for (int s = 0; s < splits; ++s) {
            const float *src = ws + ((long long)s * M + m) * p.Kg + k;
            v0 += src[0];
            if (two) v1 += src[1];
        }
        conv_store2(p, m, k, v0, v1, two);
    }
}
