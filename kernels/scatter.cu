// Scatter with constant indices (tx2_infer_core/cuda/lower_index.py: ScatterND,
// ScatterElements). The output already holds a copy of the data; entry m of the tables writes
// output element y[dst[m]] from the updates src[first[m]] .. src[first[m + 1] - 1] (logical
// update indices, read through uv) combined in that order by ``op``: NONE keeps the last, ADD,
// MUL, MAX and MIN reduce them into the data's value, in FP32. Each output element has one
// entry, so no two threads touch it.
#include "common.cuh"

#define SCATTER_NONE 0
#define SCATTER_ADD 1
#define SCATTER_MUL 2
#define SCATTER_MAX 3
#define SCATTER_MIN 4

__device__ __forceinline__ float scatter_combine(int op, float acc, float v) {
    switch (op) {
    case SCATTER_ADD: return acc + v;
    case SCATTER_MUL: return acc * v;
    case SCATTER_MAX: return (acc != acc || acc > v) ? acc : v;  // NaN wins, as np.maximum
    case SCATTER_MIN: return (acc != acc || acc < v) ? acc : v;
    default: return v;
    }
}

extern "C" __global__ void scatter(const half *u, View uv, const int *dst, const int *first,
                                   const int *src, long long count, half *y, int op) {
    for (long long m = blockIdx.x * (long long)blockDim.x + threadIdx.x; m < count;
         m += (long long)gridDim.x * blockDim.x) {
        half *out = y + dst[m];
        float acc = __half2float(*out);
        for (int k = first[m]; k < first[m + 1]; ++k)
            acc = scatter_combine(op, acc, __half2float(u[tx2_view_offset(uv, src[k])]));
        *out = __float2half(acc);
    }
}
