// The elementwise op codes and their device functions, shared by elementwise.cu and the
// kernels tx2_infer_core/cuda/codegen_pointwise.py generates (one per fused chain).
#pragma once
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
#define UN_SOFTSIGN 9

// Binary op codes BIN_<OP NAME>, as in tx2_infer_core/ops/traits.py.
#define BIN_ADD 0
#define BIN_SUB 1
#define BIN_MUL 2
#define BIN_DIV 3
#define BIN_MAX 4
#define BIN_MIN 5
#define BIN_POW 6
#define BIN_PRELU 7

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
    case UN_SOFTSIGN: return v / (1.f + fabsf(v));
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
    case BIN_PRELU: return a >= 0.f ? a : a * b;
    default: return powf(a, b);
    }
}
