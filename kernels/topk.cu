// TopK along one axis: the rows of a RowWalk (rows.cuh; tx2_infer_core/cuda/lower_topk.py),
// one block per row. K rounds: each thread takes, among its elements of the row, the best one
// ranked after the previous round's pick; the block reduces those to the round's pick, which
// thread 0 writes as the k-th value and index (int32 when ``indices_i32``, else FP16: exact
// up to 2048; tx2_infer_core/cuda/int32_values.py says which).
// The order is the numpy reference's (ops/index.py TopK): descending values when ``largest``,
// else ascending; NaN above every number (first when largest, last when smallest); equal
// values in ascending index order. The walk's n is the row's length; the outputs hold K
// elements per row (written at element k < K, the same strides). ``values`` or ``indices``
// may be NULL (an output nobody reads). blockDim.x: a multiple of 32, up to TX2_TEAM_MAX.
#include "rows.cuh"

// True when (a, i) ranks before (b, j); an index below 0 is no candidate (ranks last).
__device__ __forceinline__ bool topk_before(float a, int i, float b, int j, bool largest) {
    if (i < 0 || j < 0) return j < 0 && i >= 0;
    const bool a_nan = a != a, b_nan = b != b;
    if (a_nan != b_nan) return largest ? a_nan : b_nan;
    if (a_nan || a == b) return i < j;
    return largest ? a > b : a < b;
}

extern "C" __global__ void topk_rows(const half *x, half *values, void *indices, RowWalk w,
                                     long long ir1, long long ir2, long long ir3,
                                     long long ij1, long long ij2, int k_count, int largest,
                                     int indices_i32) {
    __shared__ float warp_v[TX2_TEAM_MAX / 32];
    __shared__ int warp_j[TX2_TEAM_MAX / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (long long r = blockIdx.x; r < w.rows; r += gridDim.x) {
        const half *xr = x + tx2_row(w, r, w.xr1, w.xr2, w.xr3);
        float last = 0.f;
        int last_j = -1;  // the previous round's pick (none yet)
        for (int k = 0; k < k_count; ++k) {
            float best = 0.f;
            int at = -1;
            for (int j = threadIdx.x; j < w.n; j += blockDim.x) {
                const float v = __half2float(xr[tx2_elem(w, j, w.xj1, w.xj2)]);
                const bool after = last_j < 0 || topk_before(last, last_j, v, j, largest);
                if (after && topk_before(v, j, best, at, largest)) best = v, at = j;
            }
            for (int o = 16; o > 0; o >>= 1) {
                const float v = __shfl_xor_sync(0xffffffffu, best, o);
                const int j = __shfl_xor_sync(0xffffffffu, at, o);
                if (topk_before(v, j, best, at, largest)) best = v, at = j;
            }
            if (lane == 0) warp_v[warp] = best, warp_j[warp] = at;
            __syncthreads();
            for (int q = 0; q < warps; ++q)  // every thread reduces the warps' picks alike
                if (topk_before(warp_v[q], warp_j[q], best, at, largest))
                    best = warp_v[q], at = warp_j[q];
            __syncthreads();  // all have read warp_v before the next round writes it
            if (threadIdx.x == 0) {
                if (values)
                    values[tx2_row(w, r, w.yr1, w.yr2, w.yr3) + tx2_elem(w, k, w.yj1, w.yj2)] =
                        __float2half(best);
                if (indices) {
                    const long long o = tx2_row(w, r, ir1, ir2, ir3) + tx2_elem(w, k, ij1, ij2);
                    if (indices_i32) static_cast<int *>(indices)[o] = at;
                    else static_cast<half *>(indices)[o] = __int2half_rn(at);
                }
            }
            last = best, last_j = at;
        }
    }
}
