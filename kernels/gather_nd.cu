// Gathers by indices read at run time or from a constant table (tx2_infer_core/cuda/
// lower_index.py): GatherND, and its one-component cases GatherElements and Gather.
// Output element i (row-major over yv's shape) reads the data at
//     xv(i) + sum over k < sel.ndim of index_k(i) * sel.stride[k],
// where xv is the data over the output's shape (stride 0 along the indexed dims) and
// index_k(i) the k-th component of i's index: at iv(i) + k * ik in ``idx`` (FP16 integers,
// exact up to 2048) or, when ``table`` is not NULL, in the int32 ``table`` (a constant table
// in the weights, or int32 indices computed at run time in the arena). A negative index
// counts from the end of its dim (sel.shape[k]), as ONNX says; an index still out of range
// reads NaN (ONNX makes it an error, which a kernel cannot raise).
#include "common.cuh"

extern "C" __global__ void gather_nd(const half *x, View xv, View sel, const half *idx,
                                     const int *table, View iv, long long ik, half *y, View yv,
                                     long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        long long src = tx2_view_offset(xv, i);
        const long long at = tx2_view_offset(iv, i);
        bool inside = true;
        for (int k = 0; k < sel.ndim; ++k) {
            long long j = table ? (long long)table[at + k * ik]
                                : (long long)__half2float(idx[at + k * ik]);
            if (j < 0) j += sel.shape[k];
            inside = inside && j >= 0 && j < sel.shape[k];
            src += j * sel.stride[k];
        }
        y[tx2_view_offset(yv, i)] = inside ? x[src] : __ushort_as_half((unsigned short)0x7e00);
    }
}
