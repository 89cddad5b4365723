// The memory-bound kernels as they were before issue 14 (commit 825d090): kernels/pool.cu's
// global_reduce (a block per 32 channels of one image, never split) and kernels/softmax.cu's
// softmax (a warp per row). Only bench/bench_membound.py compiles them, as module membound_old,
// to time them beside the new ones in the same run.
#include "common.cuh"

// Global reductions over the pixels of N images of HW pixels, C channels (the ONNX Reduce ops of
// a run of axes as [outer N, reduced HW, inner C]; GlobalAveragePool, GlobalLpPool p=1, 2):
// a block per (32 channels, image); its blockDim.y rows (at most GAP_MAX_ROWS) split the
// pixels, then every row combines the partial results. A warp reads 32 adjacent channels of one
// pixel (coalesced); many pixels are in flight per channel. FP32 accumulation. Each element adds
// a term (|x|, x^2, exp(x - peak)), the total makes the result (mean, sqrt, log);
// RED_LOGSUMEXP first finds each channel's peak (its maximum, 0 when not finite, as numpy).
#define GAP_MAX_ROWS 32
#define RED_MEAN 0
#define RED_SUM 1
#define RED_MAX 2
#define RED_MIN 3
#define RED_PROD 4
#define RED_L1 5
#define RED_L2 6
#define RED_SUMSQUARE 7
#define RED_LOGSUM 8
#define RED_LOGSUMEXP 9

// a combined with b under ``op`` (max and min keep a NaN, as numpy does)
__device__ __forceinline__ float tx2_reduce(int op, float a, float b) {
    if (op == RED_MAX) return (b > a || b != b) ? b : a;
    if (op == RED_MIN) return (b < a || b != b) ? b : a;
    if (op == RED_PROD) return a * b;
    return a + b;
}

__device__ __forceinline__ float tx2_reduce_start(int op) {
    return op == RED_MAX ? -TX2_INF : op == RED_MIN ? TX2_INF : op == RED_PROD ? 1.f : 0.f;
}

// what element ``v`` adds under ``op``
__device__ __forceinline__ float tx2_reduce_term(int op, float v, float peak) {
    if (op == RED_L1) return fabsf(v);
    if (op == RED_L2 || op == RED_SUMSQUARE) return v * v;
    if (op == RED_LOGSUMEXP) return expf(v - peak);
    return v;
}

// the result of ``total``, the combined terms of ``count`` elements
__device__ __forceinline__ float tx2_reduce_result(int op, float total, int count, float peak) {
    if (op == RED_MEAN) return total / count;
    if (op == RED_L2) return sqrtf(total);
    if (op == RED_LOGSUM) return logf(total);
    if (op == RED_LOGSUMEXP) return logf(total) + peak;
    return total;
}

// The combined terms of channel ``threadIdx.x`` (``xp``: its first element; ``active``: it
// exists) over the HW pixels, in every row of the block.
__device__ float tx2_block_reduce(int op, const half *xp, int HW, int x_pix, bool active,
                                  float peak, float (*part)[33]) {
    float acc = tx2_reduce_start(op);
    if (active) {
        for (int i = threadIdx.y; i < HW; i += blockDim.y)
            acc = tx2_reduce(op, acc, tx2_reduce_term(op, __half2float(xp[(long long)i * x_pix]),
                                                      peak));
    }
    __syncthreads();  // an earlier call's readers are done with ``part``
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    float total = tx2_reduce_start(op);
    for (int r = 0; r < blockDim.y; ++r) total = tx2_reduce(op, total, part[r][threadIdx.x]);
    return total;
}

extern "C" __global__ void global_reduce(const half *x, half *y, int N, int HW, int C, int x_pix,
                                         int x_off, int y_pix, int y_off, int op) {
    __shared__ float part[GAP_MAX_ROWS][33];
    const int c = blockIdx.x * 32 + threadIdx.x, n = blockIdx.y;
    const half *xp = x + (long long)n * HW * x_pix + x_off + c;
    float peak = 0.f;
    if (op == RED_LOGSUMEXP) {
        peak = tx2_block_reduce(RED_MAX, xp, HW, x_pix, c < C, 0.f, part);
        if (!isfinite(peak)) peak = 0.f;
    }
    const float total = tx2_block_reduce(op, xp, HW, x_pix, c < C, peak, part);
    if (threadIdx.y == 0 && c < C)
        y[(long long)n * y_pix + y_off + c] = __float2half(tx2_reduce_result(op, total, HW, peak));
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

extern "C" __global__ void softmax(const half *x, half *y, long long outer, int n, int inner,
                                   int log_softmax) {
    const int lane = threadIdx.x & 31;
    const long long rows = outer * inner;
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    for (long long row = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32; row < rows;
         row += warps) {
        const long long base = (row / inner) * n * inner + row % inner, step = inner;
        float mx = -TX2_INF;
        for (int j = lane; j < n; j += 32) mx = fmaxf(mx, __half2float(x[base + j * step]));
        mx = warp_max(mx);
        float sum = 0.f;
        for (int j = lane; j < n; j += 32) sum += __expf(__half2float(x[base + j * step]) - mx);
        sum = tx2_warp_sum(sum);
        const float lsum = __logf(sum);
        for (int j = lane; j < n; j += 32) {
            const float v = __half2float(x[base + j * step]) - mx;
            y[base + j * step] = __float2half(log_softmax ? v - lsum : __expf(v) / sum);
        }
    }
}
