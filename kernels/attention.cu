// Fused scaled dot-product attention (FusedAttention, tx2_infer_core/passes/fuse_attention.py):
// y = softmax(scale * Q K^T + mask) V per (batch, head); FP16 in and out, FP32 scores, softmax
// and accumulation. Q, K, V, the mask and y are strided views (element strides of batch, head,
// row, column), so Q, K, V may be column slices of one merged QKV tensor and y the rows of a
// [B, S, H * Dv] tensor: the copies around an attention never run.
// Keys go through shared memory a tile at a time with an online softmax (running row max and
// sum, the partial output rescaled when the max grows), so any sequence length runs in fixed
// shared memory; head sizes up to ATT_MAX_D. One CTA per (batch * head, query tile).
// attention_mma (sm_80+): a warp owns 16 query rows; S = Q K^T and O += P V on mma.sync
// m16n8k16 (P stays in registers: the accumulator layout of S is the A-operand layout of P).
// attention_simt (any arch: the TX2's sm_62, Xavier's sm_72): a warp owns ATT_SIMT_ROWS query
// rows; a lane computes one key's score per row and output columns lane + 32 j.
#include "common.cuh"
#include "mma_async.cuh"

#define ATT_BK 64          // keys per shared tile (attention_mma)
#define ATT_MAX_D 128      // largest head size, Q/K and V
#define ATT_SIMT_BK 32     // keys per shared tile (attention_simt): one per lane
#define ATT_SIMT_ROWS 4    // query rows per warp (attention_simt)
#define ATT_SIMT_WARPS 4   // warps per CTA (attention_simt)

struct AttnParams {
    const half *q;
    const half *k;
    const half *v;
    const half *mask;  // null: no mask
    half *y;
    int B, H, Sq, Sk, D, Dv;
    int q_b, q_h, q_s, q_d;  // element strides of batch, head, row, column
    int k_b, k_h, k_s, k_d;
    int v_b, v_h, v_s, v_d;
    int m_b, m_h, m_s, m_k;  // mask strides, 0 where it broadcasts
    int y_b, y_h, y_s, y_d;
    int vec;  // K and V rows are 16-byte aligned runs of D (Dv) halves, D and Dv multiples of 8
    float scale;
};

// The operands of this CTA's (batch, head): blockIdx.x = b * H + h.
struct HeadViews {
    const half *q, *k, *v, *m;
    half *y;
};

__device__ __forceinline__ HeadViews head_views(const AttnParams &p) {
    const long long b = blockIdx.x / p.H, h = blockIdx.x % p.H;
    HeadViews t;
    t.q = p.q + b * p.q_b + h * p.q_h;
    t.k = p.k + b * p.k_b + h * p.k_h;
    t.v = p.v + b * p.v_b + h * p.v_h;
    t.m = p.mask ? p.mask + b * p.m_b + h * p.m_h : nullptr;
    t.y = p.y + b * p.y_b + h * p.y_h;
    return t;
}

__device__ __forceinline__ void att_put(half *dst, half v) { *dst = v; }
__device__ __forceinline__ void att_put(float *dst, half v) { *dst = __half2float(v); }

// dst[r * ld_r + c * ld_c] = src[r * s_r + c * s_c] for r < rows_pad, c < cols_pad; zero where
// r >= rows or c >= cols. ``vec``: 16-byte loads (s_c == 1, cols and cols_pad multiples of 8).
template <typename T>
__device__ void stage_tile(T *dst, int ld_r, int ld_c, const half *src, int s_r, int s_c,
                           int rows, int cols, int rows_pad, int cols_pad, bool vec) {
    if (vec) {
        const int chunks = cols_pad / 8;
        for (int i = threadIdx.x; i < rows_pad * chunks; i += blockDim.x) {
            const int r = i / chunks, c = i % chunks * 8;
            uint4 raw = make_uint4(0u, 0u, 0u, 0u);
            if (r < rows && c < cols)
                raw = *reinterpret_cast<const uint4 *>(src + (long long)r * s_r + c);
            const half *h8 = reinterpret_cast<const half *>(&raw);
#pragma unroll
            for (int j = 0; j < 8; ++j) att_put(dst + r * ld_r + (c + j) * ld_c, h8[j]);
        }
        return;
    }
    for (int i = threadIdx.x; i < rows_pad * cols_pad; i += blockDim.x) {
        const int r = i / cols_pad, c = i % cols_pad;
        half v = __float2half(0.f);
        if (r < rows && c < cols) v = src[(long long)r * s_r + (long long)c * s_c];
        att_put(dst + r * ld_r + c * ld_c, v);
    }
}

// scale * score + mask of query ``row`` and key ``key``; -inf past the last key.
__device__ __forceinline__ float att_logit(const AttnParams &p, const half *m, float s, int row,
                                           int key) {
    if (key >= p.Sk) return -TX2_INF;
    s *= p.scale;
    if (m != nullptr && row < p.Sq)
        s += __half2float(m[(long long)row * p.m_s + (long long)key * p.m_k]);
    return s;
}

// Online softmax step of one row: the new running max ``m`` (from this tile's ``tile_max``),
// the factor that rescales the old sum and output, and the base to subtract (0 while every
// logit so far is -inf, so no inf - inf).
__device__ __forceinline__ float att_rescale(float &m, float tile_max, float &base) {
    const float m_new = fmaxf(m, tile_max);
    base = m_new == -TX2_INF ? 0.f : m_new;
    const float corr = __expf(m - base);
    m = m_new;
    return corr;
}

__device__ __forceinline__ float att_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// ---------------------------------------------------------------------------------------------
// attention_simt: FP32 maths from shared FP32 tiles.
extern "C" __global__ void __launch_bounds__(128) attention_simt(AttnParams p) {
    constexpr int QROWS = ATT_SIMT_WARPS * ATT_SIMT_ROWS, OCOLS = ATT_MAX_D / 32;
    __shared__ float Qs[QROWS][ATT_MAX_D];
    __shared__ float Ks[ATT_SIMT_BK][ATT_MAX_D + 1];  // +1: lanes (keys) hit distinct banks
    __shared__ float Vs[ATT_SIMT_BK][ATT_MAX_D];
    const HeadViews t = head_views(p);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int q0 = blockIdx.y * QROWS;
    stage_tile(&Qs[0][0], ATT_MAX_D, 1, t.q + (long long)q0 * p.q_s, p.q_s, p.q_d,
               min(QROWS, p.Sq - q0), p.D, QROWS, p.D, false);
    float o[ATT_SIMT_ROWS][OCOLS], m[ATT_SIMT_ROWS], l[ATT_SIMT_ROWS];
#pragma unroll
    for (int r = 0; r < ATT_SIMT_ROWS; ++r) {
        m[r] = -TX2_INF;
        l[r] = 0.f;
#pragma unroll
        for (int c = 0; c < OCOLS; ++c) o[r][c] = 0.f;
    }
    for (int k0 = 0; k0 < p.Sk; k0 += ATT_SIMT_BK) {
        const int keys = min(ATT_SIMT_BK, p.Sk - k0);
        __syncthreads();  // the previous tile is consumed (and Qs is staged)
        stage_tile(&Ks[0][0], ATT_MAX_D + 1, 1, t.k + (long long)k0 * p.k_s, p.k_s, p.k_d, keys,
                   p.D, ATT_SIMT_BK, p.D, p.vec != 0);
        stage_tile(&Vs[0][0], ATT_MAX_D, 1, t.v + (long long)k0 * p.v_s, p.v_s, p.v_d, keys,
                   p.Dv, ATT_SIMT_BK, p.Dv, p.vec != 0);
        __syncthreads();
#pragma unroll
        for (int r = 0; r < ATT_SIMT_ROWS; ++r) {
            const int qr = warp * ATT_SIMT_ROWS + r;
            float s = 0.f;
            for (int d = 0; d < p.D; ++d) s += Qs[qr][d] * Ks[lane][d];
            s = att_logit(p, t.m, s, q0 + qr, k0 + lane);
            float base;
            const float corr = att_rescale(m[r], att_warp_max(s), base);
            const float pj = __expf(s - base);
            l[r] = l[r] * corr + tx2_warp_sum(pj);
#pragma unroll
            for (int c = 0; c < OCOLS; ++c) o[r][c] *= corr;
            for (int j = 0; j < keys; ++j) {
                const float pk = __shfl_sync(0xffffffffu, pj, j);
#pragma unroll
                for (int c = 0; c < OCOLS; ++c)
                    if (lane + 32 * c < p.Dv) o[r][c] += pk * Vs[j][lane + 32 * c];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ATT_SIMT_ROWS; ++r) {
        const int row = q0 + warp * ATT_SIMT_ROWS + r;
#pragma unroll
        for (int c = 0; c < OCOLS; ++c) {
            const int col = lane + 32 * c;
            if (row < p.Sq && col < p.Dv)
                t.y[(long long)row * p.y_s + (long long)col * p.y_d] =
                    __float2half(o[r][c] / l[r]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// attention_mma: tensor cores, sm_80+ (a trap stub below: the host launches it from sm_80).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
__device__ __forceinline__ void att_mma(float *d, const unsigned *a, const unsigned *b) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ unsigned att_pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned *>(&v);
}

// The largest head size of this build's attention_mma (-DATT_MMA_D=64 halves its registers,
// loops and code for heads of 64 or less); its K and V tiles are double-buffered where two fit.
#ifndef ATT_MMA_D
#define ATT_MMA_D ATT_MAX_D
#endif
#define ATT_MMA_LD (ATT_MMA_D + 8)  // K and V tile row in halves (16-byte rows, 8 banks apart)
#define ATT_MMA_STAGES (ATT_MMA_D <= 64 ? 2 : 1)

// A fragments of Q rows r0 + g and r0 + g + 8, k steps of 16 columns (zero past D and Sq);
// one 32-bit load per pair where the rows are aligned runs of halves.
__device__ __forceinline__ void att_q_frags(unsigned (*qa)[4], const AttnParams &p,
                                            const half *q, int r0, int g, int t) {
    const bool pairs = p.q_d == 1 && !(p.q_s & 1) && !(p.D & 1) &&
                       !(reinterpret_cast<unsigned long long>(q) & 3);
#pragma unroll
    for (int ks = 0; ks < ATT_MMA_D / 16; ++ks)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int row = r0 + g + (j & 1) * 8, col = ks * 16 + t * 2 + (j >> 1) * 8;
            const half *src = q + (long long)row * p.q_s + (long long)col * p.q_d;
            const bool ok = row < p.Sq && col < p.D;
            if (pairs) {
                qa[ks][j] = ok ? *reinterpret_cast<const unsigned *>(src) : 0u;
                continue;
            }
            const float lo = ok ? __half2float(src[0]) : 0.f;
            const float hi = ok && col + 1 < p.D ? __half2float(src[p.q_d]) : 0.f;
            qa[ks][j] = att_pack(lo, hi);
        }
}

// Rows [keys, ATT_BK) and columns [cols, cols_pad) of a K or V tile are zero; the rest is
// copied from ``src`` (row stride s_r, column stride s_c): 16-byte cp.async copies of the
// whole ATT_MMA_D columns when ``vec`` (committed as one group), else element by element.
__device__ __forceinline__ void att_stage(half (*dst)[ATT_MMA_LD], const half *src, int s_r,
                                          int s_c, int keys, int cols, int cols_pad, bool vec) {
    if (!vec) {
        stage_tile(&dst[0][0], ATT_MMA_LD, 1, src, s_r, s_c, keys, cols, ATT_BK, cols_pad,
                   false);
        return;
    }
    constexpr int chunks = ATT_MMA_D / 8;  // a constant: no division per chunk
#pragma unroll 4
    for (int i = threadIdx.x; i < ATT_BK * chunks; i += blockDim.x) {
        const int r = i / chunks, c = i % chunks * 8;
        const bool ok = r < keys && c < cols;
        const half *from = ok ? src + (long long)r * s_r + c : src;
        cp_async16(&dst[r][c], from, ok);
    }
    cp_async_commit();
}

// The K and V tiles of keys k0.. into stage buffers (Ks, Vs): rows are keys, row-major.
__device__ __forceinline__ void att_load_kv(half (*Ks)[ATT_MMA_LD], half (*Vs)[ATT_MMA_LD],
                                            const AttnParams &p, const HeadViews &hv, int k0,
                                            int dk, int dv) {
    const int keys = min(ATT_BK, p.Sk - k0);
    att_stage(Ks, hv.k + (long long)k0 * p.k_s, p.k_s, p.k_d, keys, p.D, dk, p.vec != 0);
    att_stage(Vs, hv.v + (long long)k0 * p.v_s, p.v_s, p.v_d, keys, p.Dv, dv, p.vec != 0);
}
#endif

extern "C" __global__ void __launch_bounds__(128) attention_mma(AttnParams p) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    constexpr int NB = ATT_BK / 8, KS = ATT_MMA_D / 16, OB = ATT_MMA_D / 8;
    constexpr int ST = ATT_MMA_STAGES;
    __shared__ __align__(16) half Ks[ST][ATT_BK][ATT_MMA_LD];
    __shared__ __align__(16) half Vs[ST][ATT_BK][ATT_MMA_LD];
    const HeadViews hv = head_views(p);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = blockIdx.y * (blockDim.x / 2) + warp * 16;  // 16 rows a warp
    const int dk = (p.D + 15) & ~15, dv = (p.Dv + 15) & ~15;
    const int tiles = (p.Sk + ATT_BK - 1) / ATT_BK;
    if (ST == 2) att_load_kv(Ks[0], Vs[0], p, hv, 0, dk, dv);
    unsigned qa[KS][4];
    att_q_frags(qa, p, hv.q, r0, g, t);
    float o[OB][4], m[2] = {-TX2_INF, -TX2_INF}, l[2] = {0.f, 0.f};
#pragma unroll
    for (int nb = 0; nb < OB; ++nb) o[nb][0] = o[nb][1] = o[nb][2] = o[nb][3] = 0.f;
    for (int tile = 0; tile < tiles; ++tile) {
        const int k0 = tile * ATT_BK, buf = ST == 2 ? tile & 1 : 0;
        if (ST == 1) {
            __syncthreads();  // the previous tile is consumed
            att_load_kv(Ks[0], Vs[0], p, hv, k0, dk, dv);
        }
        asm volatile("cp.async.wait_group 0;\n" ::: "memory");
        __syncthreads();  // this tile landed for all; the other buffer is consumed
        if (ST == 2 && tile + 1 < tiles)
            att_load_kv(Ks[buf ^ 1], Vs[buf ^ 1], p, hv, k0 + ATT_BK, dk, dv);
        float s[NB][4];  // scores of rows g, g + 8 (c0 c1 | c2 c3) and keys nb * 8 + 2t, +1
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
            s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
#pragma unroll
            for (int ks = 0; ks < KS; ++ks)
                if (ks * 16 < dk) {
                    const half *kr = &Ks[buf][nb * 8 + g][ks * 16 + t * 2];
                    const unsigned b[2] = {*reinterpret_cast<const unsigned *>(kr),
                                           *reinterpret_cast<const unsigned *>(kr + 8)};
                    att_mma(s[nb], qa[ks], b);
                }
        }
        float mx[2] = {-TX2_INF, -TX2_INF};
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                s[nb][j] = att_logit(p, hv.m, s[nb][j], r0 + g + (j >> 1) * 8,
                                     k0 + nb * 8 + t * 2 + (j & 1));
                mx[j >> 1] = fmaxf(mx[j >> 1], s[nb][j]);
            }
        float corr[2], base[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            corr[r] = att_rescale(m[r], mx[r], base[r]);
            l[r] *= corr[r];  // this thread's share of the row sum (the quad's summed at the end)
        }
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                s[nb][j] = __expf(s[nb][j] - base[j >> 1]);
                l[j >> 1] += s[nb][j];
            }
#pragma unroll
        for (int nb = 0; nb < OB; ++nb)
#pragma unroll
            for (int j = 0; j < 4; ++j) o[nb][j] *= corr[j >> 1];
#pragma unroll
        for (int kc = 0; kc < ATT_BK / 16; ++kc) {
            const unsigned a[4] = {att_pack(s[2 * kc][0], s[2 * kc][1]),
                                   att_pack(s[2 * kc][2], s[2 * kc][3]),
                                   att_pack(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                                   att_pack(s[2 * kc + 1][2], s[2 * kc + 1][3])};
#pragma unroll
            for (int nb = 0; nb < OB; nb += 2)
                if (nb * 8 < dv) {
                    // B fragments of V (keys kc * 16.., columns nb * 8.. and the next 8),
                    // transposed from its key rows by ldmatrix
                    const half *vr = &Vs[buf][kc * 16 + (lane & 15)][nb * 8 + (lane >> 4) * 8];
                    unsigned b[4];
                    asm volatile(
                        "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                        : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3]) : "r"(smem_addr(vr)));
                    att_mma(o[nb], a, b);
                    att_mma(o[nb + 1], a, b + 2);
                }
        }
    }
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        inv[r] = 1.f / l[r];
    }
    const bool pairs = p.y_d == 1 && !(p.y_s & 1) && !(p.Dv & 1) &&
                       !(reinterpret_cast<unsigned long long>(hv.y) & 3);
#pragma unroll
    for (int nb = 0; nb < OB; ++nb)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int row = r0 + g + h * 8, col = nb * 8 + t * 2;
            if (row >= p.Sq || col >= p.Dv) continue;
            half *dst = hv.y + (long long)row * p.y_s + (long long)col * p.y_d;
            const float v0 = o[nb][2 * h] * inv[h], v1 = o[nb][2 * h + 1] * inv[h];
            if (pairs) {
                *reinterpret_cast<half2 *>(dst) = __floats2half2_rn(v0, v1);
                continue;
            }
            dst[0] = __float2half(v0);
            if (col + 1 < p.Dv) dst[p.y_d] = __float2half(v1);
        }
#else
    __trap();  // the host launches this path only from sm_80
#endif
}
