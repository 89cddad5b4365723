// Softmax / LogSoftmax along the elements of each row of a RowWalk (rows.cuh;
// tx2_infer_core/cuda/lower_nn.py): a team of threads per row (a few lanes for short rows, a
// warp, the whole block for rows of thousands), FP32 maths on FP16 data: the row's peak, the
// sum of exp(x - peak), then each output.
#include "rows.cuh"

#define SOFTMAX_BATCH 8  // loads in flight per thread: a long row is latency-bound, not serial

// Elements j, j + team, ... (SOFTMAX_BATCH of them) of row ``xr`` as floats, -inf past n.
__device__ __forceinline__ void softmax_load(const RowWalk &w, const half *xr, int j,
                                             float *v) {
#pragma unroll
    for (int u = 0; u < SOFTMAX_BATCH; ++u) {
        const int k = j + u * (int)blockDim.x;
        v[u] = k < w.n ? __half2float(xr[tx2_elem(w, k, w.xj1, w.xj2)]) : -TX2_INF;
    }
}

extern "C" __global__ void softmax(const half *x, half *y, RowWalk w, int log_softmax) {
    __shared__ float shared[TX2_TEAM_MAX / 32];
    for (long long first = (long long)blockIdx.x * blockDim.y; first < w.rows;
         first += (long long)gridDim.x * blockDim.y) {
        const long long r = first + threadIdx.y;
        const bool ok = r < w.rows;
        const int start = ok ? (int)threadIdx.x : w.n;  // a missing row reads nothing
        const half *xr = x + (ok ? tx2_row(w, r, w.xr1, w.xr2, w.xr3) : 0);
        float peak = -TX2_INF;
        for (int j = start; j < w.n; j += SOFTMAX_BATCH * blockDim.x) {
            float v[SOFTMAX_BATCH];
            softmax_load(w, xr, j, v);
#pragma unroll
            for (int u = 0; u < SOFTMAX_BATCH; ++u) peak = fmaxf(peak, v[u]);
        }
        peak = tx2_team_max(peak, shared);
        float sum = 0.f;
        for (int j = start; j < w.n; j += SOFTMAX_BATCH * blockDim.x) {
            float v[SOFTMAX_BATCH];
            softmax_load(w, xr, j, v);
#pragma unroll
            for (int u = 0; u < SOFTMAX_BATCH; ++u) sum += __expf(v[u] - peak);  // -inf past n
        }
        sum = tx2_team_sum(sum, shared);
        if (!ok) continue;
        const float lsum = __logf(sum);
        half *yr = y + tx2_row(w, r, w.yr1, w.yr2, w.yr3);
        for (int j = start; j < w.n; j += blockDim.x) {
            const float v = __half2float(xr[tx2_elem(w, j, w.xj1, w.xj2)]) - peak;
            yr[tx2_elem(w, j, w.yj1, w.yj2)] = __float2half(log_softmax ? v - lsum
                                                                        : __expf(v) / sum);
        }
    }
}
