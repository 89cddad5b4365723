// Softmax / LogSoftmax along one axis of a contiguous FP16 tensor seen as [outer, n, inner]:
// one warp per (outer, inner) row, FP32 maths.
#include "common.cuh"

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
