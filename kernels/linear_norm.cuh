// LayerNorm of a GEMM's output rows in its epilogue (sm_90, conv_mma.cu -DCONV_MMA_LN=C): the
// C CTAs along y of a thread-block cluster hold every column of their BM rows, so a row's mean
// and variance are sums over the cluster through distributed shared memory. Per row (N = Kg):
//   s = conv_epilogue(acc)  (bias, residual, activation; rounded to FP16 as a stored sum is)
//   y = (s - mean(s)) * rsqrt(mean((s - mean(s))^2) + eps) * gamma + beta
// s is also stored at ConvParams.y when that is not null (a pre-norm encoder's residual
// stream). Every CTA sums the partials in one fixed order (lanes, warps, cluster ranks), so
// the statistics are the same in each CTA of the cluster and from run to run.
#pragma once
#include "cluster.cuh"
#include "conv.cuh"

// The kernel's LayerNorm arguments (gamma, beta, ln_y, ln_pix, eps), bundled on the device.
struct LnParams {
    const float *gamma;
    const float *beta;  // may be null
    half *y;            // the normalised rows, y_pix elements apart
    int y_pix;
    float eps;
};

#if defined(CONV_MMA_LN) && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900)
// One 32-bit float at ``ptr`` in the shared memory of the cluster's CTA ``rank``.
__device__ __forceinline__ float tx2_cluster_load1(const float *ptr, unsigned rank) {
    unsigned remote;
    float v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n"
                 : "=r"(remote) : "r"((unsigned)__cvta_generic_to_shared(ptr)), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(v) : "r"(remote) : "memory");
    return v;
}

// The tile row of fragment (i, h) of a warp at row wm (mma.sync's m16n8 layout).
__device__ __forceinline__ int ln_row(int wm, int i, int h, int lane) {
    return wm + i * 16 + (lane >> 2) + h * 8;
}

// Each of this thread's four row partials ``v`` becomes its row's total over the cluster: the
// four lanes of a row, the BN / 32 warps of the CTA's row band, then the C CTAs in rank order.
// ``total`` is this call's own BM floats (a peer may still read the previous call's).
template <int BM, int BN, int C>
__device__ __forceinline__ void ln_row_totals(float (*part)[BM], float *total, float (&v)[2][2],
                                              int wm, int wn, int lane) {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            float s = v[i][h];
            s += __shfl_xor_sync(0xffffffffu, s, 1);
            s += __shfl_xor_sync(0xffffffffu, s, 2);
            if ((lane & 3) == 0) part[wn / 32][ln_row(wm, i, h, lane)] = s;
        }
    __syncthreads();
    for (int r = threadIdx.x; r < BM; r += blockDim.x) {
        float s = 0.f;
#pragma unroll
        for (int q = 0; q < BN / 32; ++q) s += part[q][r];
        total[r] = s;
    }
    tx2_cluster_sync();  // every CTA's row totals are in its shared memory; part is free again
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            float s = 0.f;
            for (int q = 0; q < C; ++q) s += tx2_cluster_load1(&total[ln_row(wm, i, h, lane)], q);
            v[i][h] = s;
        }
}

// Two FP16 values at element ``off`` of ``y``: one half2 store where both fit and align.
__device__ __forceinline__ void ln_store2(half *y, long long off, float v0, float v1, bool two) {
    if (two && !(off & 1)) {
        *reinterpret_cast<half2 *>(y + off) = __floats2half2_rn(v0, v1);
        return;
    }
    y[off] = __float2half(v0);
    if (two) y[off + 1] = __float2half(v1);
}

// The epilogue sums ``s`` of one warp's 32x32 fragments (acc, replaced by them; 0 outside the
// output), stored at p.y when it is set; returns the per-row partial sums through ``sum``.
__device__ __forceinline__ void ln_sums(const ConvParams &p, long long m0, int n0, int wm,
                                        int wn, float (*acc)[4][4], int lane,
                                        float (&sum)[2][2]) {
    const long long M = (long long)p.N * p.P * p.Q;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const long long m = m0 + ln_row(wm, i, h, lane);
                const int k = n0 + wn + j * 8 + (lane & 3) * 2;
                float *v = &acc[i][j][2 * h];
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    float s = 0.f;
                    if (m < M && k + e < p.Kg) {
                        const float b = p.bias ? p.bias[k + e] : 0.f;
                        const float r =
                            p.res ? __half2float(p.res[m * p.r_pix + p.r_off + k + e]) : 0.f;
                        s = __half2float(__float2half(conv_epilogue(p, v[e], b, r, k + e)));
                    }
                    v[e] = s;
                    sum[i][h] += s;
                }
                if (p.y && m < M && k < p.Kg)
                    ln_store2(p.y, m * p.y_pix + p.y_off + k, v[0], v[1], k + 1 < p.Kg);
            }
}

// The cluster's LayerNorm of the tile's rows (file comment) and its FP16 stores at ln.y.
template <int BM, int BN, int C>
__device__ void ln_store(const ConvParams &p, const LnParams &ln, long long m0, int n0, int wm,
                         int wn, float (*acc)[4][4], int lane) {
    __shared__ float part[BN / 32][BM];
    __shared__ float total[2][BM];
    const long long M = (long long)p.N * p.P * p.Q;
    float mean[2][2] = {}, var[2][2] = {};
    ln_sums(p, m0, n0, wm, wn, acc, lane, mean);
    ln_row_totals<BM, BN, C>(part, total[0], mean, wm, wn, lane);
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            mean[i][h] /= p.Kg;
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int k = n0 + wn + j * 8 + (lane & 3) * 2 + e;
                    const float d = acc[i][j][2 * h + e] - mean[i][h];
                    var[i][h] += k < p.Kg ? d * d : 0.f;
                }
        }
    ln_row_totals<BM, BN, C>(part, total[1], var, wm, wn, lane);
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const long long m = m0 + ln_row(wm, i, h, lane);
            const float rstd = rsqrtf(var[i][h] / p.Kg + ln.eps);
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int k = n0 + wn + j * 8 + (lane & 3) * 2;
                if (m >= M || k >= p.Kg) continue;
                float y[2];
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int c = min(k + e, p.Kg - 1);
                    const float b = ln.beta ? ln.beta[c] : 0.f;
                    y[e] = (acc[i][j][2 * h + e] - mean[i][h]) * rstd * ln.gamma[c] + b;
                }
                ln_store2(ln.y, m * ln.y_pix + k, y[0], y[1], k + 1 < p.Kg);
            }
        }
    tx2_cluster_sync();  // no CTA leaves while a peer still reads its totals
}

// The epilogue sums ``s`` of 8 staged columns k.. of row m (``v``, replaced by them; 0 past
// Kg), stored at p.y when it is set; returns their sum.
__device__ __forceinline__ float ln_sums8(const ConvParams &p, long long m, int k, float *v) {
    float sum = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        float s = 0.f;
        if (k + e < p.Kg) {
            const float b = p.bias ? p.bias[k + e] : 0.f;
            const float r = p.res ? __half2float(p.res[m * p.r_pix + p.r_off + k + e]) : 0.f;
            s = __half2float(__float2half(conv_epilogue(p, v[e], b, r, k + e)));
        }
        v[e] = s;
        sum += s;
    }
    if (p.y) {
#pragma unroll 1
        for (int e = 0; e < 8 && k + e < p.Kg; e += 2)
            ln_store2(p.y, m * p.y_pix + p.y_off + k + e, v[e], v[e + 1], k + e + 1 < p.Kg);
    }
    return sum;
}

// ``v`` summed over the ``lanes`` consecutive lanes that hold one tile row (a power of two).
__device__ __forceinline__ float ln_lanes_sum(float v, int lanes) {
    for (int o = 1; o < lanes; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Row r's total over the cluster's CTAs, in rank order (the same in every CTA).
template <int C>
__device__ __forceinline__ float ln_cluster_total(const float *total, int r) {
    float s = 0.f;
    for (int q = 0; q < C; ++q) s += tx2_cluster_load1(&total[r], q);
    return s;
}

// ln_store over the CTA's accumulators staged in shared memory (``tile``, rows of BN + 4
// FP32): each thread takes 8 columns of a row per step and the BN / 8 threads of a row sum
// it by shuffles, so the code is one copy of an 8-column epilogue, not one per fragment.
template <int BM, int BN, int C>
__device__ void ln_store_staged(const ConvParams &p, const LnParams &ln, float *tile,
                                long long m0, int n0) {
    constexpr int LD = BN + 4, CHUNKS = BN / 8, STEPS = BM * CHUNKS / (BM * BN / 32);
    __shared__ float total[2][BM];
    __shared__ float mean[BM], rstd[BM];
    const long long M = (long long)p.N * p.P * p.Q;
#pragma unroll 1
    for (int it = 0; it < STEPS; ++it) {
        const int idx = threadIdx.x + it * blockDim.x, row = idx / CHUNKS;
        const int k = n0 + idx % CHUNKS * 8;
        float *v = &tile[row * LD + idx % CHUNKS * 8];
        const float s = m0 + row < M ? ln_sums8(p, m0 + row, k, v) : 0.f;
        const float sum = ln_lanes_sum(s, CHUNKS);
        if (idx % CHUNKS == 0) total[0][row] = sum;
    }
    tx2_cluster_sync();  // every CTA's row sums are in its shared memory
    for (int r = threadIdx.x; r < BM; r += blockDim.x)
        mean[r] = ln_cluster_total<C>(total[0], r) / p.Kg;
    __syncthreads();
#pragma unroll 1
    for (int it = 0; it < STEPS; ++it) {
        const int idx = threadIdx.x + it * blockDim.x, row = idx / CHUNKS;
        const int k = n0 + idx % CHUNKS * 8;
        const float *v = &tile[row * LD + idx % CHUNKS * 8];
        float d2 = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) {
            const float d = v[e] - mean[row];
            d2 += k + e < p.Kg ? d * d : 0.f;
        }
        const float sum = ln_lanes_sum(d2, CHUNKS);
        if (idx % CHUNKS == 0) total[1][row] = sum;
    }
    tx2_cluster_sync();  // every CTA's squared deviations are in its shared memory
    for (int r = threadIdx.x; r < BM; r += blockDim.x)
        rstd[r] = rsqrtf(ln_cluster_total<C>(total[1], r) / p.Kg + ln.eps);
    __syncthreads();
#pragma unroll 1
    for (int it = 0; it < STEPS; ++it) {
        const int idx = threadIdx.x + it * blockDim.x, row = idx / CHUNKS;
        const long long m = m0 + row;
        const int k = n0 + idx % CHUNKS * 8;
        const float *v = &tile[row * LD + idx % CHUNKS * 8];
        if (m >= M || k >= p.Kg) continue;
#pragma unroll 1
        for (int e = 0; e < 8 && k + e < p.Kg; e += 2) {
            float y[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int c = min(k + e + h, p.Kg - 1);
                const float b = ln.beta ? ln.beta[c] : 0.f;
                y[h] = (v[e + h] - mean[row]) * rstd[row] * ln.gamma[c] + b;
            }
            ln_store2(ln.y, m * ln.y_pix + k + e, y[0], y[1], k + e + 1 < p.Kg);
        }
    }
    tx2_cluster_sync();  // no CTA leaves while a peer still reads its totals
}
#endif
