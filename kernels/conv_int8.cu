// INT8 fused convolution on the SIMT cores with __dp4a (sm_61+: the Jetson TX2's sm_62, Xavier
// sm_72), and the QuantizeLinear / DequantizeLinear kernels of the float/int8 boundaries.
// Layout and epilogue: conv_int8.cuh. Implicit GEMM: M = N*P*Q pixels, N = Kg channels of a
// group, K = R*S*Cw 4-channel words flattened over (r, s, word), so a 16-channel layer fills
// every k chunk. A CTA computes 64 pixels x 64 channels with 256 threads (4x4 each, int32
// accumulators): small tiles for a 2-SM GPU. Global loads for the next k chunk are issued
// before the current chunk's dp4a loop (register prefetch).
// conv_dp4a_w: 4-byte activation loads (x_pix, x_off multiples of 4; Cg a multiple of 4, or
// one group whose padding lies inside the pixel); conv_dp4a: byte gathers (any layer).
#include "conv_int8.cuh"

#define I8_BM 64
#define I8_BN 64
#define I8_BKW 8  // 4-channel words per k chunk (32 channels)
#define I8_LD (I8_BM + 4)

// A position in the flattened k of one pixel: tap (r, s) and channel word cw.
struct I8Tap {
    int r, s, cw;
};

__device__ __forceinline__ void i8_tap_init(I8Tap &t, int kw, int Cw, int S) {
    const int rs = kw / Cw;
    t.cw = kw - rs * Cw;
    t.r = rs / S;
    t.s = rs - t.r * S;
}

__device__ __forceinline__ void i8_tap_step(I8Tap &t, int n, int Cw, int S) {
    t.cw += n;
    while (t.cw >= Cw) {
        t.cw -= Cw;
        if (++t.s == S) {
            t.s = 0;
            ++t.r;
        }
    }
}

// Channels 4*cw .. 4*cw+3 of the input pixel under tap t of output (oh, ow), packed in one
// int (channel 4*cw in the low byte); 0 outside the image, past k or (byte path) past Cg.
template <bool WORDS>
__device__ __forceinline__ int i8_x_word(const ConvI8Params &p, const s8 *xg, int oh, int ow,
                                         bool mok, const I8Tap &t) {
    const int ih = oh * p.sh - p.ph + t.r * p.dh, iw = ow * p.sw - p.pw + t.s * p.dw;
    if (!mok || t.r >= p.R || (unsigned)ih >= (unsigned)p.H || (unsigned)iw >= (unsigned)p.W)
        return 0;
    const s8 *px = xg + ((long long)ih * p.W + iw) * p.x_pix + t.cw * 4;
    if (WORDS) return *reinterpret_cast<const int *>(px);
    unsigned v = 0;
    for (int j = 0; j < 4; ++j)
        if (t.cw * 4 + j < p.Cg) v |= (unsigned)(unsigned char)px[j] << (8 * j);
    return (int)v;
}

template <bool WORDS>
__device__ void conv_dp4a_body(const ConvI8Params &p) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 610
    __shared__ __align__(16) int As[I8_BKW][I8_LD];
    __shared__ __align__(16) int Bs[I8_BKW][I8_LD];
    const int g = blockIdx.z, tid = threadIdx.x;
    const long long M = (long long)p.N * p.P * p.Q, m0 = (long long)blockIdx.x * I8_BM;
    const int n0 = blockIdx.y * I8_BN, kwords = p.R * p.S * p.Cw;
    // loader: one pixel row and one weight row of the tile, two consecutive words of each
    const int lrow = tid >> 2, lw = (tid & 3) * 2;
    const long long lm = m0 + lrow;
    int img = 0, oh = 0, ow = 0;
    if (lm < M) tx2_decode_pixel(lm, p.P, p.Q, img, oh, ow);
    const s8 *xg = i8_x_image(p, img, g);
    const bool mok = lm < M, kvalid = n0 + lrow < p.Kg;
    const int *wk = reinterpret_cast<const int *>(p.w) +
                    (long long)(g * p.Kg + (kvalid ? n0 + lrow : 0)) * kwords;
    I8Tap t[2];
    int ra[2], rb[2];
    for (int j = 0; j < 2; ++j) {
        i8_tap_init(t[j], lw + j, p.Cw, p.S);
        ra[j] = i8_x_word<WORDS>(p, xg, oh, ow, mok, t[j]);
        rb[j] = (kvalid && lw + j < kwords) ? wk[lw + j] : 0;
    }
    const int tx = tid & 15, ty = tid >> 4;
    int acc[4][4] = {};
    for (int k0 = 0; k0 < kwords; k0 += I8_BKW) {
        __syncthreads();
        for (int j = 0; j < 2; ++j) {
            As[lw + j][lrow] = ra[j];
            Bs[lw + j][lrow] = rb[j];
        }
        __syncthreads();
        if (k0 + I8_BKW < kwords) {  // prefetch the next chunk while this one computes
            for (int j = 0; j < 2; ++j) {
                const int kw = k0 + I8_BKW + lw + j;
                i8_tap_step(t[j], I8_BKW, p.Cw, p.S);
                ra[j] = i8_x_word<WORDS>(p, xg, oh, ow, mok, t[j]);
                rb[j] = (kvalid && kw < kwords) ? wk[kw] : 0;
            }
        }
#pragma unroll
        for (int kk = 0; kk < I8_BKW; ++kk) {
            const int4 a = *reinterpret_cast<const int4 *>(&As[kk][ty * 4]);
            const int4 b = *reinterpret_cast<const int4 *>(&Bs[kk][tx * 4]);
            const int av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = __dp4a(av[i], bv[j], acc[i][j]);
        }
    }
    const int k = n0 + tx * 4;
    if (k >= p.Kg) return;
    for (int i = 0; i < 4; ++i) {
        const long long m = m0 + ty * 4 + i;
        if (m < M) i8_store(p, m, g * p.Kg + k, acc[i], min(4, p.Kg - k));
    }
#else
    __trap();  // the host never launches dp4a below sm_61
#endif
}

extern "C" __global__ void __launch_bounds__(256) conv_dp4a(ConvI8Params p) {
    conv_dp4a_body<false>(p);
}

extern "C" __global__ void __launch_bounds__(256) conv_dp4a_w(ConvI8Params p) {
    conv_dp4a_body<true>(p);
}

// The boundary kernels over NHWC images: ``pixels`` pixels of C channels. QuantizeLinear
// writes channels C .. cpad - 1 (the int8 pixel's padding) as 0.
struct QuantParams {
    const void *x;
    void *y;
    long long pixels;
    int C, cpad, x_pix, x_off, y_pix, y_off;
    float scale;
};

// QuantizeLinear, fp16 -> int8: sat8(rint(x / scale)), the division in float32 (IEEE).
extern "C" __global__ void quantize_nhwc(QuantParams p) {
    const int cpad = p.cpad;
    const long long total = p.pixels * cpad;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long m = i / cpad;
        const int c = (int)(i - m * cpad);
        int q = 0;
        if (c < p.C) {
            const half *x = static_cast<const half *>(p.x);
            const float v = __half2float(x[m * p.x_pix + p.x_off + c]);
            q = max(-128, min(127, __float2int_rn(__fdiv_rn(v, p.scale))));
        }
        static_cast<s8 *>(p.y)[m * p.y_pix + p.y_off + c] = (s8)q;
    }
}

// DequantizeLinear, int8 -> fp16: half(float(q) * scale).
extern "C" __global__ void dequantize_nhwc(QuantParams p) {
    const long long total = p.pixels * p.C;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long m = i / p.C;
        const int c = (int)(i - m * p.C);
        const float q = (float)static_cast<const s8 *>(p.x)[m * p.x_pix + p.x_off + c];
        half *y = static_cast<half *>(p.y);
        y[m * p.y_pix + p.y_off + c] = __float2half_rn(__fmul_rn(q, p.scale));
    }
}
