// INT8 fused convolution (issue 11, notes/int8.md), shared by kernels/conv_int8.cu (dp4a SIMT,
// sm_61+) and kernels/conv_int8_mma.cu (mma.sync s8 tensor cores, sm_80+).
// Layout: activations NHWC int8 whose pixel stride (x_pix) is the channel count padded to a
// multiple of 4 (the padding bytes are never trusted: their weights are zero); weights
// [K][R][S][Cw * 4] (OHWI) with a group's input channels zero-padded to Cw 4-byte words;
// bias int32; dq[k] = float32(x_scale) * float32(w_scale[k]).
// The epilogue is notes/int8.md's float32 sequence with __fmul_rn/__fadd_rn, so nothing
// contracts into an FMA and the int8 result equals the numpy emulation bit for bit:
//   v = float(acc + bias) * dq;  v += r (res_after 0);  v = act(v);
//   v = v * post_scale + post_shift (two roundings, as numpy);  v += r (res_after 1)
//   out_inv > 0: y = sat8(rint(v * out_inv)),  out_inv == 0: y = half(v)
// r is the fp16 residual, or float(residual_q) * res_scale for an int8 one (res_int8).
#pragma once
#include "common.cuh"

typedef signed char s8;

struct ConvI8Params {
    const s8 *x;
    const s8 *w;
    const int *bias;  // may be null
    const float *dq;
    const void *res;  // half or s8 (res_int8); may be null
    void *y;          // s8 (out_inv > 0) or half
    int N, H, W, P, Q;
    int Cg, Cw, Kg, groups;
    int R, S, sh, sw, ph, pw, dh, dw;
    int x_pix, x_off, y_pix, y_off, r_pix, r_off;
    int res_after, res_int8;
    float res_scale, out_inv;
    ActParams act;
};

// Image ``img`` of the input, at the first channel of group ``g``.
__device__ __forceinline__ const s8 *i8_x_image(const ConvI8Params &p, int img, int g) {
    return p.x + (long long)img * p.H * p.W * p.x_pix + p.x_off + g * p.Cg;
}

// The residual of output pixel m, channel k, as float32.
__device__ __forceinline__ float i8_residual(const ConvI8Params &p, long long m, int k) {
    const long long o = m * p.r_pix + p.r_off + k;
    if (p.res_int8) return __fmul_rn((float)static_cast<const s8 *>(p.res)[o], p.res_scale);
    return __half2float(static_cast<const half *>(p.res)[o]);
}

// The float32 epilogue of accumulator ``acc`` at pixel m, channel k (over all groups).
__device__ __forceinline__ float i8_epilogue(const ConvI8Params &p, long long m, int k,
                                             int acc) {
    if (p.bias) acc += p.bias[k];
    float v = __fmul_rn(__int2float_rn(acc), p.dq[k]);
    const float r = p.res ? i8_residual(p, m, k) : 0.f;
    if (p.res && !p.res_after) v = __fadd_rn(v, r);
    v = __fadd_rn(__fmul_rn(tx2_act(v, p.act), p.act.post_scale), p.act.post_shift);
    if (p.res && p.res_after) v = __fadd_rn(v, r);
    return v;
}

// Requantise: rint(v * inv) saturated to [-128, 127] (NaN -> 0, as __float2int_rn).
__device__ __forceinline__ int i8_requant(float v, float inv) {
    return max(-128, min(127, __float2int_rn(__fmul_rn(v, inv))));
}

// Epilogue and store of ``n`` (1..4) consecutive channels k.. of pixel m: one 4-byte int8
// store or two half2 stores where aligned, else element by element.
__device__ __forceinline__ void i8_store(const ConvI8Params &p, long long m, int k,
                                         const int *acc, int n) {
    const long long o = m * p.y_pix + p.y_off + k;
    float v[4];
    for (int j = 0; j < n; ++j) v[j] = i8_epilogue(p, m, k + j, acc[j]);
    if (p.out_inv > 0.f) {
        s8 *y = static_cast<s8 *>(p.y) + o;
        if (n == 4 && !(o & 3)) {
            unsigned word = 0;
            for (int j = 0; j < 4; ++j)
                word |= (unsigned)(i8_requant(v[j], p.out_inv) & 0xff) << (8 * j);
            *reinterpret_cast<unsigned *>(y) = word;
            return;
        }
        for (int j = 0; j < n; ++j) y[j] = (s8)i8_requant(v[j], p.out_inv);
        return;
    }
    half *y = static_cast<half *>(p.y) + o;
    if (!(o & 1)) {
        int j = 0;
        for (; j + 1 < n; j += 2)
            *reinterpret_cast<half2 *>(y + j) = __floats2half2_rn(v[j], v[j + 1]);
        if (j < n) y[j] = __float2half_rn(v[j]);
        return;
    }
    for (int j = 0; j < n; ++j) y[j] = __float2half_rn(v[j]);
}
