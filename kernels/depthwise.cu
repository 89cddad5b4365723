// Depthwise convolution (one input channel a group: Cg == 1; Kg output channels a group,
// K = groups * Kg), NHWC FP16 in and out, FP32 accumulation, with the FusedConv epilogue of
// conv.cuh (bias, activation, residual). Also the per-channel affine of a standalone
// BatchNormalization: a 1x1 kernel (weight = scale, bias = shift).
// Weights are [R][S][K] (channels fastest: neighbouring threads read neighbouring weights).
// One thread an output pixel and one (depthwise), two (depthwise_h2) or eight (depthwise_v8)
// channels; channels are fastest over the threads, so loads and stores are coalesced along
// the NHWC rows. depthwise_h2 needs Kg == 1 and an even K, x_pix and x_off; depthwise_v8
// (16-byte loads of x and w) needs Kg == 1 and K, x_pix and x_off multiples of 8 (the host
// checks; the stores are half2 where y and the residual are even-aligned, else halves).
// Every form runs on every arch (sm_62 included).
#include "conv.cuh"

// Input channel ``c`` of image ``img`` at row ``ih``, column ``iw``.
__device__ __forceinline__ const half *dw_x(const ConvParams &p, int img, int ih, int iw,
                                            int c) {
    return p.x + (((long long)img * p.H + ih) * p.W + iw) * p.x_pix + p.x_off + c;
}

extern "C" __global__ void depthwise(ConvParams p) {
    const int K = p.Kg * p.groups;
    const long long total = (long long)p.N * p.P * p.Q * K;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int k = (int)(idx % K), c = k / p.Kg;
        const long long m = idx / K;
        int img, oh, ow;
        decode_pixel(p, m, img, oh, ow);
        float acc = 0.f;
        for (int r = 0; r < p.R; ++r) {
            const int ih = oh * p.sh - p.ph + r * p.dh;
            if (ih < 0 || ih >= p.H) continue;
            for (int s = 0; s < p.S; ++s) {
                const int iw = ow * p.sw - p.pw + s * p.dw;
                if (iw < 0 || iw >= p.W) continue;
                acc = fmaf(__half2float(*dw_x(p, img, ih, iw, c)),
                           __half2float(p.w[(r * p.S + s) * K + k]), acc);
            }
        }
        conv_store(p, m, k, acc);
    }
}

extern "C" __global__ void depthwise_h2(ConvParams p) {
    const int K = p.groups, K2 = K / 2;  // Kg == 1: one output channel per input channel
    const long long total = (long long)p.N * p.P * p.Q * K2;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int k = 2 * (int)(idx % K2);
        const long long m = idx / K2;
        int img, oh, ow;
        decode_pixel(p, m, img, oh, ow);
        float2 acc = make_float2(0.f, 0.f);
        for (int r = 0; r < p.R; ++r) {
            const int ih = oh * p.sh - p.ph + r * p.dh;
            if (ih < 0 || ih >= p.H) continue;
            for (int s = 0; s < p.S; ++s) {
                const int iw = ow * p.sw - p.pw + s * p.dw;
                if (iw < 0 || iw >= p.W) continue;
                const float2 xv = __half22float2(
                    *reinterpret_cast<const half2 *>(dw_x(p, img, ih, iw, k)));
                const float2 wv = __half22float2(
                    *reinterpret_cast<const half2 *>(p.w + (r * p.S + s) * K + k));
                acc.x = fmaf(xv.x, wv.x, acc.x);
                acc.y = fmaf(xv.y, wv.y, acc.y);
            }
        }
        conv_store2(p, m, k, acc.x, acc.y, true);
    }
}

extern "C" __global__ void depthwise_v8(ConvParams p) {
    const int K = p.groups, K8 = K / 8;  // Kg == 1: one output channel per input channel
    const long long total = (long long)p.N * p.P * p.Q * K8;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int k = 8 * (int)(idx % K8);
        const long long m = idx / K8;
        int img, oh, ow;
        decode_pixel(p, m, img, oh, ow);
        float acc[8] = {};
        for (int r = 0; r < p.R; ++r) {
            const int ih = oh * p.sh - p.ph + r * p.dh;
            if (ih < 0 || ih >= p.H) continue;
            for (int s = 0; s < p.S; ++s) {
                const int iw = ow * p.sw - p.pw + s * p.dw;
                if (iw < 0 || iw >= p.W) continue;
                const uint4 xv = *reinterpret_cast<const uint4 *>(dw_x(p, img, ih, iw, k));
                const uint4 wv = *reinterpret_cast<const uint4 *>(p.w + (r * p.S + s) * K + k);
                const half2 *xh = reinterpret_cast<const half2 *>(&xv);
                const half2 *wh = reinterpret_cast<const half2 *>(&wv);
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const float2 a = __half22float2(xh[j]), b = __half22float2(wh[j]);
                    acc[2 * j] = fmaf(a.x, b.x, acc[2 * j]);
                    acc[2 * j + 1] = fmaf(a.y, b.y, acc[2 * j + 1]);
                }
            }
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) conv_store2(p, m, k + 2 * j, acc[2 * j], acc[2 * j + 1], true);
    }
}
