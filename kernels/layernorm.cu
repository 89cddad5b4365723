// LayerNormalization of a contiguous FP16 tensor [rows, n] (the axes from ``axis`` on are n):
// one warp per row, FP32 statistics, FP32 gamma and beta (beta may be null); the optional
// outputs mean and rstd (ONNX Mean and InvStdDev, one per row) may be null.
#include "common.cuh"

extern "C" __global__ void layernorm(const half *x, const float *gamma, const float *beta,
                                     half *y, long long rows, int n, float eps, half *mean_out,
                                     half *rstd_out) {
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    for (long long row = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32; row < rows;
         row += warps) {
        const half *xr = x + row * n;
        float sum = 0.f, sq = 0.f;
        for (int j = lane; j < n; j += 32) {
            const float v = __half2float(xr[j]);
            sum += v;
            sq += v * v;
        }
        sum = tx2_warp_sum(sum);
        sq = tx2_warp_sum(sq);
        const float mean = sum / n;
        const float rstd = rsqrtf(fmaxf(sq / n - mean * mean, 0.f) + eps);
        if (lane == 0 && mean_out) mean_out[row] = __float2half(mean);
        if (lane == 0 && rstd_out) rstd_out[row] = __float2half(rstd);
        for (int j = lane; j < n; j += 32) {
            const float b = beta ? beta[j] : 0.f;
            const float v = (__half2float(xr[j]) - mean) * rstd * gamma[j] + b;
            y[row * n + j] = __float2half(v);
        }
    }
}
