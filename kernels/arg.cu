// ArgMax, ArgMin and Hardmax along one axis: the rows of a RowWalk (rows.cuh;
// tx2_infer_core/cuda/lower_axis.py), a team of threads per row. As numpy: a NaN wins (its first
// index), ties go to the first index (the last with ``last``, ONNX select_last_index).
// ARG_MAX, ARG_MIN write the index at the row's output element: int32 when ``y_i32``, else
// FP16 (exact up to 2048; tx2_infer_core/cuda/int32_values.py says which);
// ARG_HARDMAX writes 1 at the maximum's element of the row and 0 elsewhere.
#include "rows.cuh"

#define ARG_MAX 0
#define ARG_MIN 1
#define ARG_HARDMAX 2

// True when (v, j) wins over (b, at); an index below 0 is no candidate.
__device__ __forceinline__ bool arg_better(float v, int j, float b, int at, bool least,
                                           bool last) {
    if (j < 0 || at < 0) return at < 0 && j >= 0;
    const bool v_nan = v != v, b_nan = b != b;
    if (v_nan != b_nan) return v_nan;
    if (v_nan || v == b) return last ? j > at : j < at;
    return least ? v < b : v > b;
}

extern "C" __global__ void arg_rows(const half *x, void *y, RowWalk w, int mode, int last,
                                    int y_i32) {
    const bool least = mode == ARG_MIN;
    for (long long first = (long long)blockIdx.x * blockDim.y; first < w.rows;
         first += (long long)gridDim.x * blockDim.y) {
        const long long r = first + threadIdx.y;
        const bool ok = r < w.rows;
        const half *xr = x + (ok ? tx2_row(w, r, w.xr1, w.xr2, w.xr3) : 0);
        float best = 0.f;
        int at = -1;
        for (int j = ok ? (int)threadIdx.x : w.n; j < w.n; j += blockDim.x) {
            const float v = __half2float(xr[tx2_elem(w, j, w.xj1, w.xj2)]);
            if (arg_better(v, j, best, at, least, last)) best = v, at = j;
        }
        for (int o = (int)blockDim.x >> 1; o > 0; o >>= 1) {  // the team inside one warp
            const float v = __shfl_xor_sync(0xffffffffu, best, o);
            const int j = __shfl_xor_sync(0xffffffffu, at, o);
            if (arg_better(v, j, best, at, least, last)) best = v, at = j;
        }
        if (!ok) continue;
        const long long yo = tx2_row(w, r, w.yr1, w.yr2, w.yr3);
        if (mode != ARG_HARDMAX) {
            if (threadIdx.x == 0 && y_i32) static_cast<int *>(y)[yo] = at;
            else if (threadIdx.x == 0) static_cast<half *>(y)[yo] = __int2half_rn(at);
            continue;
        }
        half *yr = static_cast<half *>(y) + yo;
        for (int j = threadIdx.x; j < w.n; j += blockDim.x)
            yr[tx2_elem(w, j, w.yj1, w.yj2)] = __float2half(j == at ? 1.f : 0.f);
    }
}
