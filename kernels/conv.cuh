// Fused convolution, shared by kernels/conv.cu (SIMT, WMMA, direct) and kernels/conv_mma.cu
// (mma.sync + cp.async, sm_80+): the parameter record, pixel decoding and the fused epilogue
//   y = act(conv(x, w) + bias + residual) * post_scale + post_shift      (res_after == 0)
//   y = act(conv(x, w) + bias) * post_scale + post_shift + residual      (res_after == 1)
// (post_scale, post_shift: ActParams', common.cuh tx2_act_epilogue).
#pragma once
#include "common.cuh"

struct ConvParams {
    const half *x;
    const half *w;
    const float *bias;  // may be null
    const half *res;    // may be null
    half *y;
    const float *slope;  // ACT_PRELU: one slope per output channel (else null)
    int N, H, W, P, Q;
    int Cg, Kg, groups;
    int R, S, sh, sw, ph, pw, dh, dw;
    int x_pix, x_off;  // elements between pixels; first channel of the view
    int y_pix, y_off;
    int r_pix, r_off;
    int res_after;
    ActParams act;
};

// The fused epilogue of one value of output channel ``k``: bias ``b`` and residual ``r``
// already loaded.
__device__ __forceinline__ float conv_epilogue(const ConvParams &p, float v, float b, float r,
                                               int k) {
    v += b;
    if (!p.res_after) v += r;
    v = tx2_act_epilogue(v, p.act, p.slope, k);
    if (p.res_after) v += r;
    return v;
}

// Output pixel m, channel k (of all groups): epilogue and FP16 store.
__device__ __forceinline__ void conv_store(const ConvParams &p, long long m, int k, float v) {
    const float b = p.bias ? p.bias[k] : 0.f;
    const float r = p.res ? __half2float(p.res[m * p.r_pix + p.r_off + k]) : 0.f;
    p.y[m * p.y_pix + p.y_off + k] = __float2half(conv_epilogue(p, v, b, r, k));
}

// Channels k and k + 1 (``two``) of pixel m: one half2 load/store where both are even-aligned.
__device__ __forceinline__ void conv_store2(const ConvParams &p, long long m, int k, float v0,
                                            float v1, bool two) {
    const long long yo = m * p.y_pix + p.y_off + k, ro = m * p.r_pix + p.r_off + k;
    if (!two || ((yo | (p.res ? ro : 0)) & 1)) {
        conv_store(p, m, k, v0);
        if (two) conv_store(p, m, k + 1, v1);
        return;
    }
    const float2 b = p.bias ? make_float2(p.bias[k], p.bias[k + 1]) : make_float2(0.f, 0.f);
    const float2 r = p.res ? __half22float2(*reinterpret_cast<const half2 *>(p.res + ro))
                           : make_float2(0.f, 0.f);
    *reinterpret_cast<half2 *>(p.y + yo) =
        __floats2half2_rn(conv_epilogue(p, v0, b.x, r.x, k),
                          conv_epilogue(p, v1, b.y, r.y, k + 1));
}

// 16-byte aligned (a vector load or store may use it).
__device__ __forceinline__ bool conv_aligned16(const void *ptr) {
    return !(reinterpret_cast<unsigned long long>(ptr) & 15);
}

// Channels k.. of pixel m, ``n`` of them (at most 8 are stored), from the FP32 values ``v``
// (a staged tile in shared memory): bias, residual and output in one 16-byte access each
// where all 8 exist and align, else half2 pairs (conv_store2) in a loop. One copy of the
// epilogue's code serves a whole tile: at batch 1 an SM runs a layer's code once, and a fully
// unrolled epilogue then costs more in instruction fetches than in math.
__device__ __forceinline__ void conv_store8(const ConvParams &p, long long m, int k, int n,
                                            const float *v) {
    half *y = p.y + m * p.y_pix + p.y_off + k;
    const half *r = p.res ? p.res + m * p.r_pix + p.r_off + k : nullptr;
    if (n < 8 || !conv_aligned16(y) || (r && !conv_aligned16(r)) ||
        (p.bias && !conv_aligned16(p.bias + k))) {
#pragma unroll 1
        for (int e = 0; e < n && e < 8; e += 2)
            conv_store2(p, m, k + e, v[e], v[e + 1], e + 1 < n);
        return;
    }
    const float4 a0 = *reinterpret_cast<const float4 *>(v);
    const float4 a1 = *reinterpret_cast<const float4 *>(v + 4);
    const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
    float b[8] = {}, rv[8] = {};
    if (p.bias) {
        const float4 b0 = *reinterpret_cast<const float4 *>(p.bias + k);
        const float4 b1 = *reinterpret_cast<const float4 *>(p.bias + k + 4);
        b[0] = b0.x, b[1] = b0.y, b[2] = b0.z, b[3] = b0.w;
        b[4] = b1.x, b[5] = b1.y, b[6] = b1.z, b[7] = b1.w;
    }
    if (r) {
        const uint4 raw = *reinterpret_cast<const uint4 *>(r);
        const half2 *h = reinterpret_cast<const half2 *>(&raw);
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const float2 f = __half22float2(h[e]);
            rv[2 * e] = f.x, rv[2 * e + 1] = f.y;
        }
    }
    uint4 out;
    half2 *o = reinterpret_cast<half2 *>(&out);
#pragma unroll
    for (int e = 0; e < 4; ++e)
        o[e] = __floats2half2_rn(conv_epilogue(p, a[2 * e], b[2 * e], rv[2 * e], k + 2 * e),
                                 conv_epilogue(p, a[2 * e + 1], b[2 * e + 1], rv[2 * e + 1],
                                               k + 2 * e + 1));
    *reinterpret_cast<uint4 *>(y) = out;
}

// Pixel m -> (image, output row, output column).
__device__ __forceinline__ void decode_pixel(const ConvParams &p, long long m, int &n, int &oh,
                                             int &ow) {
    tx2_decode_pixel(m, p.P, p.Q, n, oh, ow);
}

// The output pixel of GEMM row m: m itself, or with POOL (a fused 2x2 stride-2 MaxPool,
// P and Q even) rows in groups of four, one 2x2 window each: m = 4 * pooled pixel + 2 * dy + dx.
template <bool POOL>
__device__ __forceinline__ long long conv_row_pixel(const ConvParams &p, long long m) {
    if constexpr (!POOL) {
        return m;
    } else {
        const int q2 = p.Q >> 1;
        const long long t = m >> 2;  // pooled pixel: (image * P/2 + row) * Q/2 + column
        const int dy = (int)((m >> 1) & 1), dx = (int)(m & 1);
        return ((t / q2) * 2 + dy) * p.Q + (t % q2) * 2 + dx;
    }
}

// GEMM row m -> (image, output row, output column) (see conv_row_pixel).
template <bool POOL>
__device__ __forceinline__ void decode_row(const ConvParams &p, long long m, int &n, int &oh,
                                           int &ow) {
    decode_pixel(p, conv_row_pixel<POOL>(p, m), n, oh, ow);
}

// The epilogue values of channels k.. (``n`` <= 8 of them, of all groups) of pixel ``pix``
// from the FP32 values ``v``, into ``out``.
__device__ __forceinline__ void conv_values8(const ConvParams &p, long long pix, int k, int n,
                                             const float *v, float *out) {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        if (e >= n) break;
        const float b = p.bias ? p.bias[k + e] : 0.f;
        const float r = p.res ? __half2float(p.res[pix * p.r_pix + p.r_off + k + e]) : 0.f;
        out[e] = conv_epilogue(p, v[e], b, r, k + e);
    }
}

// ``n`` (<= 8) FP32 values to FP16 at ``dst``: one 16-byte store where all 8 align.
__device__ __forceinline__ void conv_put8(half *dst, int n, const float *v) {
    if (n == 8 && conv_aligned16(dst)) {
        uint4 out;
        half2 *o = reinterpret_cast<half2 *>(&out);
#pragma unroll
        for (int e = 0; e < 4; ++e) o[e] = __floats2half2_rn(v[2 * e], v[2 * e + 1]);
        *reinterpret_cast<uint4 *>(dst) = out;
        return;
    }
    for (int e = 0; e < n && e < 8; ++e) dst[e] = __float2half(v[e]);
}

// Image ``img`` of the input view, at the first channel of group ``g``.
__device__ __forceinline__ const half *conv_x_image(const ConvParams &p, int img, int g) {
    return p.x + (long long)img * p.H * p.W * p.x_pix + p.x_off + g * p.Cg;
}

// The [R][S][Cg] weights of output channel ``k`` (counted over all groups).
__device__ __forceinline__ const half *conv_w_row(const ConvParams &p, int k) {
    return p.w + (long long)k * p.R * p.S * p.Cg;
}
