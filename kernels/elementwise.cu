// Elementwise kernels over strided views (any layout, broadcasting by zero strides).
// unary: y = f(x) (f = an activation, a math function, or identity: the copy used by Reshape,
// Transpose, Slice, Split and unplaced Concat; copy_i32 the same of int32 index values).
// binary: y = act(a op b).
// unary_vec8 / binary_vec8: the same over dense tensors in 16-byte accesses (same shape, or
// b a per-channel vector or a scalar). Chains of elementwise ops get a generated kernel each
// (tx2_infer_core/cuda/codegen_pointwise.py).
#include "elementwise.cuh"

extern "C" __global__ void unary(const half *x, View xv, half *y, View yv, long long n, int op,
                                 ActParams act) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float v = __half2float(x[tx2_view_offset(xv, i)]);
        y[tx2_view_offset(yv, i)] = __float2half(tx2_unary(op, v, act));
    }
}

// unary's copy (op 0) of int32 elements: the index values (tx2_infer_core/cuda/
// int32_values.py); op and act are unused (the same parameter record as unary).
extern "C" __global__ void copy_i32(const int *x, View xv, int *y, View yv, long long n, int op,
                                    ActParams act) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        y[tx2_view_offset(yv, i)] = x[tx2_view_offset(xv, i)];
}

extern "C" __global__ void binary(const half *a, View av, const half *b, View bv, half *y,
                                  View yv, long long n, int op, ActParams act) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float va = __half2float(a[tx2_view_offset(av, i)]);
        const float vb = __half2float(b[tx2_view_offset(bv, i)]);
        y[tx2_view_offset(yv, i)] = __float2half(tx2_act(tx2_binary(op, va, vb), act));
    }
}

// Contiguous same-shape fast path: n2 half2 pairs (the host checks n is even and aligned).
extern "C" __global__ void binary_flat2(const half2 *a, const half2 *b, half2 *y, long long n2,
                                        int op, ActParams act) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n2;
         i += (long long)gridDim.x * blockDim.x) {
        const float2 fa = __half22float2(a[i]), fb = __half22float2(b[i]);
        y[i] = __floats2half2_rn(tx2_act(tx2_binary(op, fa.x, fb.x), act),
                                 tx2_act(tx2_binary(op, fa.y, fb.y), act));
    }
}

// Eight halves (one 16-byte access) through f, two at a time.
template <typename F> __device__ __forceinline__ uint4 tx2_map8(uint4 a, uint4 b, F f) {
    half2 *ha = reinterpret_cast<half2 *>(&a);
    const half2 *hb = reinterpret_cast<const half2 *>(&b);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const float2 fa = __half22float2(ha[j]), fb = __half22float2(hb[j]);
        ha[j] = __floats2half2_rn(f(fa.x, fb.x), f(fa.y, fb.y));
    }
    return a;
}

// Contiguous fast path of unary: n8 groups of 8 halves, x and y stored alike (dense, 16-byte
// aligned; the host checks).
extern "C" __global__ void unary_vec8(const uint4 *x, uint4 *y, long long n8, int op,
                                      ActParams act) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n8;
         i += (long long)gridDim.x * blockDim.x) {
        y[i] = tx2_map8(x[i], x[i], [&](float v, float) { return tx2_unary(op, v, act); });
    }
}

// Broadcast fast path of binary: a and y dense and stored alike, b repeats every b8 groups of
// 8 halves: b8 = n8 (same shape), C / 8 (a per-channel vector over NHWC or over the last dim)
// or 1 (a scalar, stored as 8 copies). One modulo per 8 elements, no View walk.
// swap: y = act(b op a) (the broadcast operand came first).
extern "C" __global__ void binary_vec8(const uint4 *a, const uint4 *b, uint4 *y, long long n8,
                                       long long b8, int swap, int op, ActParams act) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n8;
         i += (long long)gridDim.x * blockDim.x) {
        const uint4 vb = b[b8 == n8 ? i : i % b8];
        y[i] = swap ? tx2_map8(a[i], vb, [&](float u, float v) {
                          return tx2_act(tx2_binary(op, v, u), act); })
                    : tx2_map8(a[i], vb, [&](float u, float v) {
                          return tx2_act(tx2_binary(op, u, v), act); });
    }
}
