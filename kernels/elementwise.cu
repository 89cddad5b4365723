// Elementwise kernels over strided views (any layout, broadcasting by zero strides).
// unary: y = f(x) (f = an activation, a math function, or identity: the copy used by Reshape,
// Transpose, Slice, Split and unplaced Concat). binary: y = act(a op b).
#include "common.cuh"

// Unary op codes UN_<OP NAME>, as in tx2_infer_core/ops/traits.py (test_kernel_constants.py).
#define UN_ACT 0  // the activation in ActParams (ACT_NONE: a copy)
#define UN_EXP 1
#define UN_LOG 2
#define UN_SQRT 3
#define UN_NEG 4
#define UN_ABS 5
#define UN_RECIPROCAL 6
#define UN_ERF 7
#define UN_GELU 8

// Binary op codes BIN_<OP NAME>, as in tx2_infer_core/ops/traits.py.
#define BIN_ADD 0
#define BIN_SUB 1
#define BIN_MUL 2
#define BIN_DIV 3
#define BIN_MAX 4
#define BIN_MIN 5
#define BIN_POW 6

__device__ __forceinline__ float tx2_unary(int op, float v, const ActParams &act) {
    switch (op) {
    case UN_EXP: return __expf(v);
    case UN_LOG: return __logf(v);
    case UN_SQRT: return sqrtf(v);
    case UN_NEG: return -v;
    case UN_ABS: return fabsf(v);
    case UN_RECIPROCAL: return 1.f / v;
    case UN_ERF: return erff(v);
    case UN_GELU: return 0.5f * v * (1.f + erff(v * 0.70710678f));
    default: return tx2_act(v, act);
    }
}

__device__ __forceinline__ float tx2_binary(int op, float a, float b) {
    switch (op) {
    case BIN_ADD: return a + b;
    case BIN_SUB: return a - b;
    case BIN_MUL: return a * b;
    case BIN_DIV: return a / b;
    case BIN_MAX: return fmaxf(a, b);
    case BIN_MIN: return fminf(a, b);
    default: return powf(a, b);
    }
}

extern "C" __global__ void unary(const half *x, View xv, half *y, View yv, long long n, int op,
                                 ActParams act) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float v = __half2float(x[tx2_view_offset(xv, i)]);
        y[tx2_view_offset(yv, i)] = __float2half(tx2_unary(op, v, act));
    }
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
