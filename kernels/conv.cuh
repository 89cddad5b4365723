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

// Pixel m -> (image, output row, output column).
__device__ __forceinline__ void decode_pixel(const ConvParams &p, long long m, int &n, int &oh,
                                             int &ow) {
    tx2_decode_pixel(m, p.P, p.Q, n, oh, ow);
}

// Image ``img`` of the input view, at the first channel of group ``g``.
__device__ __forceinline__ const half *conv_x_image(const ConvParams &p, int img, int g) {
    return p.x + (long long)img * p.H * p.W * p.x_pix + p.x_off + g * p.Cg;
}

// The [R][S][Cg] weights of output channel ``k`` (counted over all groups).
__device__ __forceinline__ const half *conv_w_row(const ConvParams &p, int k) {
    return p.w + (long long)k * p.R * p.S * p.Cg;
}
