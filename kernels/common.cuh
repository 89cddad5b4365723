// Shared helpers of the tx2_infer kernels: activations, fp16 conversion, launch-time parameters.
// Every kernel is extern "C" so the host looks it up by its plain name. Activations are FP16 NHWC
// in one arena; arithmetic accumulates in FP32.
#pragma once
#include <cuda_fp16.h>

#define TX2_MAX_DIMS 6
#define TX2_INF __int_as_float(0x7f800000)  // NVRTC has no math.h INFINITY

// Activation codes ACT_<OP NAME>: the codes of tx2_infer_core/ops/traits.py (checked by
// test/core/test_kernel_constants.py).
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_LEAKYRELU 2
#define ACT_SIGMOID 3
#define ACT_SILU 4
#define ACT_HARDSWISH 5
#define ACT_HARDSIGMOID 6
#define ACT_CLIP 7
#define ACT_TANH 8
#define ACT_MISH 9
// GELU, only as a GEMM epilogue (FusedLinear; the Gelu op is UN_GELU): cuda/params.py
// EPILOGUE_ACTIVATIONS, erf form and tanh approximation.
#define ACT_GELU 10
#define ACT_GELU_TANH 11
#define ACT_ELU 12
#define ACT_SELU 13
#define ACT_CELU 14
#define ACT_SOFTPLUS 15
#define ACT_THRESHOLDEDRELU 16
// PRelu, only as a convolution-class epilogue (FusedConv, FusedConvTranspose, FusedLinear): its
// slope is per output channel, ConvParams.slope (tx2_act_channel); cuda/params.py
// EPILOGUE_ACTIVATIONS. A standalone PRelu is the binary op BIN_PRELU.
#define ACT_PRELU 17

struct ActParams {
    int kind;
    float alpha;  // LeakyRelu slope; HardSigmoid, Elu, Selu, Celu alpha; ThresholdedRelu's
    float beta;   // HardSigmoid beta, Selu gamma
    float lo;     // Clip min
    float hi;     // Clip max
    // The learnable affine after the activation of a convolution-class epilogue (FusedConv's
    // post_scale, post_shift; 1 and 0 leave it out): tx2_act_post. Elementwise kernels ignore
    // them.
    float post_scale;
    float post_shift;
};

__device__ __forceinline__ float tx2_sigmoid(float v) { return 1.f / (1.f + __expf(-v)); }

// -DTX2_ACTS=<mask> builds only the activations whose bit (1 << ACT_<OP>) is set: the
// lowering names each conv module with the activations its launches use (an inlined epilogue a
// store site, so unused activations cost most of a conv module's compile time).
#ifdef TX2_ACTS
#define TX2_ACT_BUILT(code) ((TX2_ACTS >> (code)) & 1)
#else
#define TX2_ACT_BUILT(code) 1
#endif

__device__ __forceinline__ float tx2_act(float v, const ActParams &a) {
    switch (a.kind) {
#if TX2_ACT_BUILT(ACT_RELU)
    case ACT_RELU: return fmaxf(v, 0.f);
#endif
#if TX2_ACT_BUILT(ACT_LEAKYRELU)
    case ACT_LEAKYRELU: return v >= 0.f ? v : v * a.alpha;
#endif
#if TX2_ACT_BUILT(ACT_SIGMOID)
    case ACT_SIGMOID: return tx2_sigmoid(v);
#endif
#if TX2_ACT_BUILT(ACT_SILU)
    case ACT_SILU: return v * tx2_sigmoid(v);
#endif
#if TX2_ACT_BUILT(ACT_HARDSWISH)
    case ACT_HARDSWISH: return v * fminf(fmaxf(v / 6.f + 0.5f, 0.f), 1.f);
#endif
#if TX2_ACT_BUILT(ACT_HARDSIGMOID)
    case ACT_HARDSIGMOID: return fminf(fmaxf(a.alpha * v + a.beta, 0.f), 1.f);
#endif
#if TX2_ACT_BUILT(ACT_CLIP)
    case ACT_CLIP: return fminf(fmaxf(v, a.lo), a.hi);
#endif
#if TX2_ACT_BUILT(ACT_TANH)
    case ACT_TANH: return tanhf(v);
#endif
#if TX2_ACT_BUILT(ACT_MISH)
    case ACT_MISH: return v * tanhf(v > 20.f ? v : log1pf(__expf(v)));  // softplus
#endif
#if TX2_ACT_BUILT(ACT_GELU)
    case ACT_GELU: return 0.5f * v * (1.f + erff(v * 0.70710678f));
#endif
#if TX2_ACT_BUILT(ACT_GELU_TANH)
    case ACT_GELU_TANH:
        return 0.5f * v * (1.f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v)));
#endif
    // ops/elementwise.py's forms (NaN stays NaN, ThresholdedRelu's NaN -> 0 as np.where)
#if TX2_ACT_BUILT(ACT_ELU)
    case ACT_ELU: return v > 0.f ? v : a.alpha * expm1f(v);
#endif
#if TX2_ACT_BUILT(ACT_SELU)
    case ACT_SELU: return a.beta * (v > 0.f ? v : a.alpha * expm1f(v));
#endif
#if TX2_ACT_BUILT(ACT_CELU)
    case ACT_CELU: return v > 0.f ? v : a.alpha * expm1f(v / a.alpha);  // <= 0 there
#endif
#if TX2_ACT_BUILT(ACT_SOFTPLUS)
    case ACT_SOFTPLUS: return v > 20.f ? v : log1pf(expf(v));
#endif
#if TX2_ACT_BUILT(ACT_THRESHOLDEDRELU)
    case ACT_THRESHOLDEDRELU: return v > a.alpha ? v : 0.f;
#endif
    default: return v;
    }
}

// The activation of output channel ``k``: ACT_PRELU reads its slope ``slope[k]`` (one per
// channel, counted over all groups), every other activation is tx2_act's.
__device__ __forceinline__ float tx2_act_channel(float v, const ActParams &a,
                                                 const float *slope, int k) {
#if TX2_ACT_BUILT(ACT_PRELU)
    if (a.kind == ACT_PRELU) return v >= 0.f ? v : v * slope[k];
#endif
    return tx2_act(v, a);
}

// The post-activation affine of a convolution-class epilogue, ``v * post_scale + post_shift``
// (one rounding: an FMA); the epilogue order is act(conv + b [+ r]) * post_scale + post_shift
// [+ r after the activation].
__device__ __forceinline__ float tx2_act_post(float v, const ActParams &a) {
    return fmaf(v, a.post_scale, a.post_shift);
}

// tx2_act_channel, then the post-activation affine: the epilogue activation of every
// convolution-class kernel (conv.cuh, so SIMT, WMMA, mma, depthwise, transposed).
__device__ __forceinline__ float tx2_act_epilogue(float v, const ActParams &a,
                                                  const float *slope, int k) {
    return tx2_act_post(tx2_act_channel(v, a, slope, k), a);
}

// An N-d strided view: logical shape and element strides of where the data really lies.
struct View {
    int ndim;
    int shape[TX2_MAX_DIMS];
    long long stride[TX2_MAX_DIMS];
    long long offset;
};

// Element offset in ``v`` of logical row-major index ``i`` over ``v.shape``.
__device__ __forceinline__ long long tx2_view_offset(const View &v, long long i) {
    long long off = v.offset;
    for (int d = v.ndim - 1; d >= 0; --d) {
        int n = v.shape[d];
        off += (i % n) * v.stride[d];
        i /= n;
    }
    return off;
}

// Output pixel m of an N x P x Q image (row-major) -> (image, output row, output column).
__device__ __forceinline__ void tx2_decode_pixel(long long m, int P, int Q, int &n, int &oh,
                                                 int &ow) {
    ow = (int)(m % Q);
    const long long t = m / Q;
    oh = (int)(t % P);
    n = (int)(t / P);
}

// Sum of ``v`` over the 32 lanes of a warp, in every lane.
__device__ __forceinline__ float tx2_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Programmatic dependent launch (sm_90+, tx2_infer_core/cuda/pdl.py): a kernel launched with
// the programmatic-serialization attribute may start while the kernel before it finishes.
// tx2_grid_wait() holds until that kernel has completed and its writes are visible: call it
// before the first access to anything another kernel writes or reads. tx2_grid_release()
// lets the next kernel start launching. Both do nothing for a normal launch or below sm_90.
__device__ __forceinline__ void tx2_grid_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void tx2_grid_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}
