// Gather along one axis with a constant index table (tx2_infer_core/cuda/lower_gather.py).
// Output element i (row-major over yv's shape: the output with its index dims merged into one
// of ``count`` entries) reads the data at xv(i) + idx[j] * step, where xv is the data over the
// same shape with stride 0 along the gathered axis, j = (i / inner) % count the entry of i, and
// step the data's stride along the axis.
#include "common.cuh"

extern "C" __global__ void gather(const half *x, View xv, const int *idx, long long inner,
                                  long long count, long long step, half *y, View yv,
                                  long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long j = (i / inner) % count;
        y[tx2_view_offset(yv, i)] = x[tx2_view_offset(xv, i) + idx[j] * step];
    }
}
