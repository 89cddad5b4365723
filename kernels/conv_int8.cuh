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

// The float32 epilogue of ``acc`` (its bias already added) with its channel's ``dq`` and
// residual ``r`` (read only where p.res).
__device__ __forceinline__ float i8_finish(const ConvI8Params &p, int acc, float dq, float r) {
    float v = __fmul_rn(__int2float_rn(acc), dq);
    if (p.res && !p.res_after) v = __fadd_rn(v, r);
    v = __fadd_rn(__fmul_rn(tx2_act(v, p.act), p.act.post_scale), p.act.post_shift);
    if (p.res && p.res_after) v = __fadd_rn(v, r);
    return v;
}

// The float32 epilogue of accumulator ``acc`` at pixel m, channel k (over all groups).
__device__ __forceinline__ float i8_epilogue(const ConvI8Params &p, long long m, int k,
                                             int acc) {
    if (p.bias) acc += p.bias[k];
    return i8_finish(p, acc, p.dq[k], p.res ? i8_residual(p, m, k) : 0.f);
}

// Requantise: rint(v * inv) saturated to [-128, 127] (NaN -> 0, as __float2int_rn).
__device__ __forceinline__ int i8_requant(float v, float inv) {
    return max(-128, min(127, __float2int_rn(__fmul_rn(v, inv))));
}

__device__ __forceinline__ bool i8_aligned(const void *ptr, int bytes) {
    return !(reinterpret_cast<unsigned long long>(ptr) & (bytes - 1));
}

// Epilogue and store of the 4 channels k..k+3 of pixel m (``acc`` 16-byte aligned) with one
// load of their biases, scales and residuals each and one store; false (nothing done) where a
// pointer is not aligned for that (the caller then takes i8_store).
__device__ __forceinline__ bool i8_store4(const ConvI8Params &p, long long m, int k,
                                          const int *acc) {
    const long long o = m * p.y_pix + p.y_off + k, ro = m * p.r_pix + p.r_off + k;
    const bool q = p.out_inv > 0.f, rq = p.res_int8;
    void *y = q ? static_cast<void *>(static_cast<s8 *>(p.y) + o)
                : static_cast<void *>(static_cast<half *>(p.y) + o);
    const void *r = !p.res ? nullptr
                    : rq   ? static_cast<const void *>(static_cast<const s8 *>(p.res) + ro)
                           : static_cast<const void *>(static_cast<const half *>(p.res) + ro);
    if (!i8_aligned(y, q ? 4 : 8) || !i8_aligned(p.dq + k, 16) ||
        (p.bias && !i8_aligned(p.bias + k, 16)) || (r && !i8_aligned(r, rq ? 4 : 8)))
        return false;
    const int4 a = *reinterpret_cast<const int4 *>(acc);
    int av[4] = {a.x, a.y, a.z, a.w};
    if (p.bias) {
        const int4 b = *reinterpret_cast<const int4 *>(p.bias + k);
        av[0] += b.x, av[1] += b.y, av[2] += b.z, av[3] += b.w;
    }
    const float4 d = *reinterpret_cast<const float4 *>(p.dq + k);
    const float dv[4] = {d.x, d.y, d.z, d.w};
    float rv[4] = {};
    if (r && rq) {
        const char4 c = *static_cast<const char4 *>(r);
        rv[0] = __fmul_rn((float)c.x, p.res_scale), rv[1] = __fmul_rn((float)c.y, p.res_scale);
        rv[2] = __fmul_rn((float)c.z, p.res_scale), rv[3] = __fmul_rn((float)c.w, p.res_scale);
    } else if (r) {
        const uint2 raw = *static_cast<const uint2 *>(r);
        const float2 f0 = __half22float2(*reinterpret_cast<const half2 *>(&raw.x));
        const float2 f1 = __half22float2(*reinterpret_cast<const half2 *>(&raw.y));
        rv[0] = f0.x, rv[1] = f0.y, rv[2] = f1.x, rv[3] = f1.y;
    }
    float v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = i8_finish(p, av[j], dv[j], rv[j]);
    if (q) {
        unsigned word = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j)
            word |= (unsigned)(i8_requant(v[j], p.out_inv) & 0xff) << (8 * j);
        *static_cast<unsigned *>(y) = word;
        return true;
    }
    uint2 out;
    *reinterpret_cast<half2 *>(&out.x) = __floats2half2_rn(v[0], v[1]);
    *reinterpret_cast<half2 *>(&out.y) = __floats2half2_rn(v[2], v[3]);
    *static_cast<uint2 *>(y) = out;
    return true;
}

// Epilogue and store of ``n`` (1..4) consecutive channels k.. of pixel m: one 4-byte int8
// store or two half2 stores where aligned, else element by element. (The loops run to 4 with
// a guard, so ``v`` stays in registers: a loop to ``n`` put it in local memory.)
__device__ __forceinline__ void i8_store(const ConvI8Params &p, long long m, int k,
                                         const int *acc, int n) {
    const long long o = m * p.y_pix + p.y_off + k;
    float v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
        if (j < n) v[j] = i8_epilogue(p, m, k + j, acc[j]);
    if (p.out_inv > 0.f) {
        s8 *y = static_cast<s8 *>(p.y) + o;
        if (n == 4 && !(o & 3)) {
            unsigned word = 0;
#pragma unroll
            for (int j = 0; j < 4; ++j)
                word |= (unsigned)(i8_requant(v[j], p.out_inv) & 0xff) << (8 * j);
            *reinterpret_cast<unsigned *>(y) = word;
            return;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j)
            if (j < n) y[j] = (s8)i8_requant(v[j], p.out_inv);
        return;
    }
    half *y = static_cast<half *>(p.y) + o;
    if (!(o & 1)) {
#pragma unroll
        for (int j = 0; j < 4; j += 2) {
            if (j + 1 < n)
                *reinterpret_cast<half2 *>(y + j) = __floats2half2_rn(v[j], v[j + 1]);
            else if (j < n)
                y[j] = __float2half_rn(v[j]);
        }
        return;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j)
        if (j < n) y[j] = __float2half_rn(v[j]);
}
