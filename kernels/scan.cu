// CumSum and CumProd along one axis: the rows of a RowWalk (rows.cuh;
// tx2_infer_core/cuda/lower_axis.py), a team of up to 32 threads per row walking it in chunks of
// the team's size: a shuffle scan of the chunk, plus the carry of the chunks before. FP32 sums
// and products; ``exclusive`` leaves each element out of its own result, ``reverse`` runs from
// the row's end.
#include "rows.cuh"

__device__ __forceinline__ float scan_op(bool prod, float a, float b) {
    return prod ? a * b : a + b;
}

extern "C" __global__ void scan_rows(const half *x, half *y, RowWalk w, int exclusive,
                                     int reverse, int prod) {
    const int team = blockDim.x, lane = threadIdx.x;
    const float none = prod ? 1.f : 0.f;
    for (long long first = (long long)blockIdx.x * blockDim.y; first < w.rows;
         first += (long long)gridDim.x * blockDim.y) {
        const long long r = first + threadIdx.y;
        const bool ok = r < w.rows;
        const half *xr = x + (ok ? tx2_row(w, r, w.xr1, w.xr2, w.xr3) : 0);
        half *yr = y + (ok ? tx2_row(w, r, w.yr1, w.yr2, w.yr3) : 0);
        float carry = none;
        for (int k0 = 0; k0 < w.n; k0 += team) {
            const int k = k0 + lane, j = reverse ? w.n - 1 - k : k;
            const bool in = ok && k < w.n;
            float inc = in ? __half2float(xr[tx2_elem(w, j, w.xj1, w.xj2)]) : none;
            for (int o = 1; o < team; o <<= 1) {
                const float u = __shfl_up_sync(0xffffffffu, inc, o, team);
                if (lane >= o) inc = scan_op(prod, u, inc);
            }
            float before = __shfl_up_sync(0xffffffffu, inc, 1, team);
            if (lane == 0) before = none;
            if (in) {
                const float out = scan_op(prod, carry, exclusive ? before : inc);
                yr[tx2_elem(w, j, w.yj1, w.yj2)] = __float2half(out);
            }
            carry = scan_op(prod, carry, __shfl_sync(0xffffffffu, inc, team - 1, team));
        }
    }
}
