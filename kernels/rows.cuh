// A tensor walked as rows of n elements (tx2_infer_core/cuda/rows.py): the kernels of norm.cu,
// arg.cu and scan.cu reduce, scan or normalise each row. Row r is the index triple
// (r / (r2 r3), r / r3 % r2, r % r3), element j the pair (j / j2, j % j2); each index has a
// stride per tensor, so row-major tensors, NHWC images and channel slices of them are all read
// and written in place.
// A block is blockDim.y teams of blockDim.x threads, a team per row: blockDim.x is a power of
// two up to 32 (a team inside one warp) or TX2_TEAM_MAX (the whole block, blockDim.y == 1).
// Rows are taken in rounds uniform over the block (first = blockIdx.x * blockDim.y, then
// + gridDim.x * blockDim.y; the team's row is first + threadIdx.y, when below rows), so every
// thread takes part in every shuffle and barrier.
#pragma once
#include "common.cuh"

#define TX2_TEAM_MAX 256

struct RowWalk {
    long long rows;
    int n, r2, r3, j2;
    long long xr1, xr2, xr3, xj1, xj2;  // element strides of the input
    long long yr1, yr2, yr3, yj1, yj2;  // of the output
};

// Element offset of row ``r`` with strides s1, s2, s3 of its index triple.
__device__ __forceinline__ long long tx2_row(const RowWalk &w, long long r, long long s1,
                                             long long s2, long long s3) {
    const long long q = r / w.r3;
    return (q / w.r2) * s1 + (q % w.r2) * s2 + (r % w.r3) * s3;
}

// Element offset of element ``j`` with strides s1, s2 of its index pair.
__device__ __forceinline__ long long tx2_elem(const RowWalk &w, int j, long long s1,
                                              long long s2) {
    return (long long)(j / w.j2) * s1 + (long long)(j % w.j2) * s2;
}

// ``v`` combined over the team (MAX: the maximum, else the sum), in every thread of it. Every
// thread of the block calls it the same number of times (a whole-block team synchronises
// through ``shared``: TX2_TEAM_MAX / 32 floats).
template <bool MAX>
__device__ __forceinline__ float tx2_team_combine(float v, float *shared) {
    const int team = blockDim.x;
    for (int o = (team < 32 ? team : 32) >> 1; o > 0; o >>= 1) {
        const float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = MAX ? fmaxf(v, u) : v + u;
    }
    if (team <= 32) return v;
    __syncthreads();  // an earlier call's readers are done with ``shared``
    if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
    __syncthreads();
    float total = shared[0];
    for (int w = 1; w < team >> 5; ++w) total = MAX ? fmaxf(total, shared[w]) : total + shared[w];
    return total;
}

// Sum of ``v`` over the team, in every thread of it (see tx2_team_combine).
__device__ __forceinline__ float tx2_team_sum(float v, float *shared) {
    return tx2_team_combine<false>(v, shared);
}

// Maximum of ``v`` over the team, in every thread of it (see tx2_team_combine).
__device__ __forceinline__ float tx2_team_max(float v, float *shared) {
    return tx2_team_combine<true>(v, shared);
}
