// Softmax / LogSoftmax along the elements of each row of a RowWalk (rows.cuh;
// tx2_infer_core/cuda/lower_nn.py): a team of threads per row (a few lanes for short rows, a
// warp, the whole block for rows of thousands), FP32 maths on FP16 data: the row's peak, the
// sum of exp(x - peak), then each output.
#include "rows.cuh"

extern "C" __global__ void softmax(const half *x, half *y, RowWalk w, int log_softmax) {
    __shared__ float shared[TX2_TEAM_MAX / 32];
    for (long long first = (long long)blockIdx.x * blockDim.y; first < w.rows;
         first += (long long)gridDim.x * blockDim.y) {
        const long long r = first + threadIdx.y;
        const bool ok = r < w.rows;
        const int start = ok ? (int)threadIdx.x : w.n;  // a missing row reads nothing
        const half *xr = x + (ok ? tx2_row(w, r, w.xr1, w.xr2, w.xr3) : 0);
        float peak = -TX2_INF;
#pragma unroll 4
        for (int j = start; j < w.n; j += blockDim.x)
            peak = fmaxf(peak, __half2float(xr[tx2_elem(w, j, w.xj1, w.xj2)]));
        peak = tx2_team_max(peak, shared);
        float sum = 0.f;
#pragma unroll 4
        for (int j = start; j < w.n; j += blockDim.x)
            sum += __expf(__half2float(xr[tx2_elem(w, j, w.xj1, w.xj2)]) - peak);
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
