// Pooling over NHWC FP16 views: max / average windows, and global average.
#include "common.cuh"

struct PoolParams {
    const half *x;
    half *y;
    int N, H, W, C, P, Q;
    int R, S, sh, sw, ph, pw, dh, dw;
    int x_pix, x_off, y_pix, y_off;
    int is_avg, count_include_pad;
};

extern "C" __global__ void pool2d(PoolParams p) {
    const long long total = (long long)p.N * p.P * p.Q * p.C;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(idx % p.C);
        const long long m = idx / p.C;
        int n, oh, ow;
        tx2_decode_pixel(m, p.P, p.Q, n, oh, ow);
        float acc = p.is_avg ? 0.f : -TX2_INF;
        int count = 0;
        for (int r = 0; r < p.R; ++r) {
            const int ih = oh * p.sh - p.ph + r * p.dh;
            for (int s = 0; s < p.S; ++s) {
                const int iw = ow * p.sw - p.pw + s * p.dw;
                const bool inside = ih >= 0 && ih < p.H && iw >= 0 && iw < p.W;
                // ONNX counts padded positions, but never beyond the padded input's end
                if (p.count_include_pad && ih < p.H + p.ph && iw < p.W + p.pw) ++count;
                if (!inside) continue;
                if (!p.count_include_pad) ++count;
                const float v = __half2float(
                    p.x[(((long long)n * p.H + ih) * p.W + iw) * p.x_pix + p.x_off + c]);
                acc = p.is_avg ? acc + v : fmaxf(acc, v);
            }
        }
        if (p.is_avg) acc = count ? acc / count : 0.f;
        p.y[m * p.y_pix + p.y_off + c] = __float2half(acc);
    }
}

// Global average over grid (channel blocks, N images, pixel splits), block (lanes, rows): a
// thread sums V adjacent channels (V = 8: one 16-byte load a pixel; needs C, x_pix and x_off
// multiples of 8) over every rows-th pixel of its split, then the rows are summed in order in
// shared memory. With splits > 1 each CTA writes its FP32 sums to ws[split][N][C] and the last
// CTA of an (image, channel block) to arrive adds them up in split order: one launch, and the
// result does not depend on which CTA finished last.
#define GAP_THREADS 256  // at most, per block (lower_nn.GAP_THREADS)

struct GlobalPoolParams {
    const half *x;
    half *y;
    float *ws;      // FP32 sums of each split, [split][N][C] (splits > 1)
    int *counters;  // arrivals, one per (image, channel block), left at zero (splits > 1)
    int N, HW, C;
    int x_pix, x_off, y_pix, y_off;
    int splits;
};

__device__ __forceinline__ void gap_add(float (&acc)[1], const half *src) {
    acc[0] += __half2float(*src);
}

__device__ __forceinline__ void gap_add(float (&acc)[8], const half *src) {
    const uint4 u = *reinterpret_cast<const uint4 *>(src);
    const half2 *h = reinterpret_cast<const half2 *>(&u);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const float2 f = __half22float2(h[j]);
        acc[2 * j] += f.x;
        acc[2 * j + 1] += f.y;
    }
}

// Partial sums written by other CTAs: read past L1.
__device__ __forceinline__ void gap_add(float (&acc)[1], const float *src) {
    acc[0] += __ldcg(src);
}

__device__ __forceinline__ void gap_add(float (&acc)[8], const float *src) {
    const float4 a = __ldcg(reinterpret_cast<const float4 *>(src));
    const float4 b = __ldcg(reinterpret_cast<const float4 *>(src) + 1);
    const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[j] += v[j];
}

// The sum over the block's rows, in row order, of each thread's V values: thread t (flat id)
// below lanes * V gets channel t of the block; ``part`` is [rows][lanes * V].
template <int V>
__device__ float gap_block_sum(const float (&acc)[V], float *part) {
    const int cw = blockDim.x * V, t = threadIdx.y * blockDim.x + threadIdx.x;
#pragma unroll
    for (int j = 0; j < V; ++j) part[t * V + j] = acc[j];
    __syncthreads();
    float sum = 0.f;
    if (t < cw)
        for (int r = 0; r < blockDim.y; ++r) sum += part[r * cw + t];
    return sum;
}

template <int V>
__device__ void global_avgpool_body(const GlobalPoolParams &p) {
    __shared__ float part[GAP_THREADS * V];
    const int n = blockIdx.y, split = blockIdx.z, cw = blockDim.x * V;
    const int c = blockIdx.x * cw + threadIdx.x * V;  // the first of this thread's V channels
    const int t = threadIdx.y * blockDim.x + threadIdx.x, out = blockIdx.x * cw + t;
    const int per = (p.HW + p.splits - 1) / p.splits, end = min(p.HW, (split + 1) * per);
    float acc[V] = {};
    if (c < p.C) {
        const half *xp = p.x + (long long)n * p.HW * p.x_pix + p.x_off + c;
#pragma unroll 4
        for (int i = split * per + threadIdx.y; i < end; i += blockDim.y)
            gap_add(acc, xp + (long long)i * p.x_pix);
    }
    float sum = gap_block_sum(acc, part);
    if (p.splits > 1) {
        if (t < cw && out < p.C) p.ws[((long long)split * p.N + n) * p.C + out] = sum;
        if (!tx2_last_arrival(p.counters + n * gridDim.x + blockIdx.x, p.splits)) return;
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] = 0.f;
        if (c < p.C) {
#pragma unroll 4
            for (int s = threadIdx.y; s < p.splits; s += blockDim.y)
                gap_add(acc, p.ws + ((long long)s * p.N + n) * p.C + c);
        }
        sum = gap_block_sum(acc, part);
    }
    if (t < cw && out < p.C)
        p.y[(long long)n * p.y_pix + p.y_off + out] = __float2half(sum / p.HW);
}

extern "C" __global__ void global_avgpool(GlobalPoolParams p) { global_avgpool_body<1>(p); }

extern "C" __global__ void global_avgpool_v8(GlobalPoolParams p) { global_avgpool_body<8>(p); }
