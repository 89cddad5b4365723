// Fused convolution, NHWC FP16 in and out, FP32 accumulation:
//   y = act(conv(x, w) + bias + residual)      (res_after == 0)
//   y = act(conv(x, w) + bias) + residual      (res_after == 1)
// Implicit GEMM: M = N*P*Q output pixels, N_gemm = Kg output channels of a group,
// K_gemm = R*S*Cg. Weights are [K][R][S][Cg] (OHWI), bias is FP32.
// Four kernels: conv_simt_h2 (half2 FMA, FP16 chunks flushed into FP32; the SIMT default, the
// Jetson TX2's sm_62 included), conv_simt (half2 loads, FP32 FMA: conv_path 'simt_fp32'),
// conv_wmma (tensor cores, sm_70+), conv_direct (one thread an output; depthwise and small
// grouped convolutions where a GEMM tile would be mostly empty).
// Template VEC: 1 = scalar loads, otherwise vector loads of VEC halves (host checks alignment).
#include "conv.cuh"
#include <mma.h>

// Load ``n`` consecutive halves at ptr[c..c+n) as floats, zero where c >= limit or !ok.
template <int VEC>
__device__ __forceinline__ void load_halves(const half *ptr, int c, int limit, bool ok,
                                            float *out, int n) {
    if (VEC > 1 && ok && c + n <= limit) {
        for (int j = 0; j < n; j += 2) {
            float2 f = __half22float2(*reinterpret_cast<const half2 *>(ptr + c + j));
            out[j] = f.x;
            out[j + 1] = f.y;
        }
        return;
    }
    for (int j = 0; j < n; ++j)
        out[j] = (ok && c + j < limit) ? __half2float(ptr[c + j]) : 0.f;
}

#define SIMT_BM 64
#define SIMT_BN 64
#define SIMT_BK 16

template <int VEC>
__device__ void conv_simt_body(const ConvParams &p) {
    __shared__ float As[SIMT_BK][SIMT_BM + 4];
    __shared__ float Bs[SIMT_BK][SIMT_BN + 4];
    const int g = blockIdx.z, tid = threadIdx.x;
    const long long M = (long long)p.N * p.P * p.Q;
    const long long m0 = (long long)blockIdx.x * SIMT_BM;
    const int n0 = blockIdx.y * SIMT_BN;
    const int lrow = tid >> 2, lc = (tid & 3) * 4;  // loader: row of the tile, 4 channels
    const long long lm = m0 + lrow;
    int img = 0, oh = 0, ow = 0;
    if (lm < M) decode_pixel(p, lm, img, oh, ow);
    const half *xg = conv_x_image(p, img, g);
    const int lk = n0 + lrow;
    const bool kvalid = lk < p.Kg;
    const half *wk = conv_w_row(p, g * p.Kg + (kvalid ? lk : 0));
    const int tx = tid & 15, ty = tid >> 4;
    float acc[4][4] = {};
    for (int r = 0; r < p.R; ++r) {
        for (int s = 0; s < p.S; ++s) {
            const int ih = oh * p.sh - p.ph + r * p.dh, iw = ow * p.sw - p.pw + s * p.dw;
            const bool inb = lm < M && ih >= 0 && ih < p.H && iw >= 0 && iw < p.W;
            const half *xp = xg + ((long long)(inb ? ih : 0) * p.W + (inb ? iw : 0)) * p.x_pix;
            const half *wp = wk + (r * p.S + s) * p.Cg;
            for (int c0 = 0; c0 < p.Cg; c0 += SIMT_BK) {
                float a4[4], b4[4];
                load_halves<VEC>(xp, c0 + lc, p.Cg, inb, a4, 4);
                load_halves<VEC>(wp, c0 + lc, p.Cg, kvalid, b4, 4);
                __syncthreads();
                for (int j = 0; j < 4; ++j) {
                    As[lc + j][lrow] = a4[j];
                    Bs[lc + j][lrow] = b4[j];
                }
                __syncthreads();
#pragma unroll
                for (int kk = 0; kk < SIMT_BK; ++kk) {
                    float a[4], b[4];
                    for (int i = 0; i < 4; ++i) a[i] = As[kk][ty * 4 + i];
                    for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx * 4 + j];
                    for (int i = 0; i < 4; ++i)
                        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
                }
            }
        }
    }
    for (int i = 0; i < 4; ++i) {
        const long long m = m0 + ty * 4 + i;
        for (int j = 0; j < 4; ++j) {
            const int k = n0 + tx * 4 + j;
            if (m < M && k < p.Kg) conv_store(p, m, g * p.Kg + k, acc[i][j]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) conv_simt(ConvParams p) {
    conv_simt_body<1>(p);
}

extern "C" __global__ void __launch_bounds__(256) conv_simt_v4(ConvParams p) {
    conv_simt_body<4>(p);
}

// conv_simt_h2: the conv_simt tile (64x64 outputs a CTA, 256 threads, 4x4 each) on HFMA2.
// k runs over channel pairs, flattened over (r, s, pair) as conv_dp4a does: a 32-bit word
// holds channels (c, c + 1) of an input pixel or of a weight row (NHWC and OHWI keep them
// adjacent), so the shared tiles hold words as loaded and __hfma2(a, b, h) adds a[c] * b[c]
// to the low lane and a[c + 1] * b[c + 1] to the high lane of one output's partial sums:
// 16 HFMA2 per two 16-byte shared loads, no conversion in the inner loop.
// Accuracy: each lane sums H2_BKW = 16 products in FP16 (one rounding per HFMA2, u = 2^-11);
// the chunk is then flushed: lo + hi in FP16 (one more rounding), converted, added to the
// output's FP32 accumulator. A chunk's error is at most 17 u = 0.83 % of the sum of its
// |products|, so, whatever K is,
//   |y - exact| <= 17 u sum_k |x_k w_k|  + FP32 adds (one per 32 products) + FP16 output.
// With rounding errors of random sign that is ~ u sqrt(16 / 6) = 8e-4 relative (L2) on sums
// of random-sign products; never flushed it would grow as sqrt(K / 32) times that (~1e-2 at
// K = 4608). Limits: a chunk's partial sums stay below 65504, products below 2^-24 are lost.
// Occupancy: 64 registers (no register prefetch: it would need 8 more), so 4 CTAs (1024
// threads) use the whole 64K-register file of an SM, and 4 x 8.5 KB of its shared memory.
// conv_simt_h2_v8: 16-byte loads (Cg, x_pix and x_off multiples of 8: a loader's 4 words lie
// in one tap); conv_simt_h2: 2-byte loads, any layer.
#define H2_BKW 16  // channel pairs (32-bit words) a k chunk: FP16 products a lane, per flush
#define H2_LD (SIMT_BM + 4)

// A position in the flattened k: tap (r, s) and channel pair cp.
struct H2Tap {
    int r, s, cp;
};

__device__ __forceinline__ void h2_tap_init(H2Tap &t, int kw, int Cp, int S) {
    const int rs = kw / Cp;
    t.cp = kw - rs * Cp;
    t.r = rs / S;
    t.s = rs - t.r * S;
}

__device__ __forceinline__ void h2_tap_step(H2Tap &t, int n, int Cp, int S) {
    t.cp += n;
    while (t.cp >= Cp) {
        t.cp -= Cp;
        if (++t.s == S) {
            t.s = 0;
            ++t.r;
        }
    }
}

__device__ __forceinline__ half2 h2_word(unsigned u) {
    half2 h;
    memcpy(&h, &u, sizeof h);
    return h;
}

__device__ __forceinline__ unsigned h2_bits(half2 h) {
    unsigned u;
    memcpy(&u, &h, sizeof u);
    return u;
}

// VEC == 8: the 4 words of channels c .. c + 7 (one 16-byte load); else the word of channels
// c, c + 1 (two 2-byte loads, zero past Cg). Zero where !ok.
template <int VEC>
__device__ __forceinline__ void h2_words(const half *base, int at, int c, int Cg, bool ok,
                                         unsigned *out) {
    const half *row = base + at;  // ``at``: the element offset of channel 0
    if (VEC == 8) {
        const uint4 v = ok ? *reinterpret_cast<const uint4 *>(row + c) : make_uint4(0, 0, 0, 0);
        out[0] = v.x;
        out[1] = v.y;
        out[2] = v.z;
        out[3] = v.w;
        return;
    }
    const half zero = __float2half(0.f);
    out[0] = h2_bits(__halves2half2(ok && c < Cg ? row[c] : zero,
                                    ok && c + 1 < Cg ? row[c + 1] : zero));
}

// A loader's fixed part: its pixel's first input row and column (oh * sh - ph, ow * sw - pw),
// the element offsets of its image (at channel 0 of the group) and of its weight row, and
// whether the pixel and the output channel exist.
struct H2Loader {
    int ih0, iw0, x_at, w_at;
    int mok, kvalid;  // 0 or 1
};

// The input and weight words of tap ``t`` for loader ``l``; zero past k, outside the image,
// past M or past Kg.
template <int VEC>
__device__ __forceinline__ void h2_load(const ConvParams &p, const H2Loader &l, const H2Tap &t,
                                        unsigned *a, unsigned *b) {
    const int ih = l.ih0 + t.r * p.dh, iw = l.iw0 + t.s * p.dw;
    const bool kin = t.r < p.R;
    const bool inb = l.mok && kin && (unsigned)ih < (unsigned)p.H && (unsigned)iw < (unsigned)p.W;
    const int c = 2 * t.cp;
    h2_words<VEC>(p.x, l.x_at + (inb ? (ih * p.W + iw) * p.x_pix : 0), c, p.Cg, inb, a);
    h2_words<VEC>(p.w, l.w_at + (kin ? (t.r * p.S + t.s) * p.Cg : 0), c, p.Cg, l.kvalid && kin,
                  b);
}

// One k chunk from the shared tiles into the 4x4 outputs' FP16 partial sums ``h`` (each a
// half2: even and odd channels).
__device__ __forceinline__ void h2_chunk(const unsigned (*As)[H2_LD],
                                         const unsigned (*Bs)[H2_LD], int tx, int ty,
                                         half2 (&h)[4][4]) {
#pragma unroll
    for (int kk = 0; kk < H2_BKW; ++kk) {
        const uint4 a = *reinterpret_cast<const uint4 *>(&As[kk][ty * 4]);
        const uint4 b = *reinterpret_cast<const uint4 *>(&Bs[kk][tx * 4]);
        const half2 av[4] = {h2_word(a.x), h2_word(a.y), h2_word(a.z), h2_word(a.w)};
        const half2 bv[4] = {h2_word(b.x), h2_word(b.y), h2_word(b.z), h2_word(b.w)};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) h[i][j] = __hfma2(av[i], bv[j], h[i][j]);
    }
}

__device__ __forceinline__ void h2_zero(half2 (&h)[4][4]) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) h[i][j] = h2_word(0u);
}

// The flush: each output's two lanes summed in FP16, added to its FP32 accumulator; h = 0.
__device__ __forceinline__ void h2_flush(half2 (&h)[4][4], float (&acc)[4][4]) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
            acc[i][j] += __half2float(__hadd(__low2half(h[i][j]), __high2half(h[i][j])));
    h2_zero(h);
}

// The loader of output pixel ``m`` and output channel ``k`` of group ``g`` (element offsets
// in 32 bits: an input image or the weights hold fewer than 2^31 halves).
__device__ __forceinline__ H2Loader h2_loader(const ConvParams &p, long long m, int k, int g) {
    H2Loader l;
    int img = 0, oh = 0, ow = 0;
    l.mok = m < (long long)p.N * p.P * p.Q;
    if (l.mok) decode_pixel(p, m, img, oh, ow);
    l.ih0 = oh * p.sh - p.ph;
    l.iw0 = ow * p.sw - p.pw;
    l.x_at = img * p.H * p.W * p.x_pix + p.x_off + g * p.Cg;  // as conv_x_image, conv_w_row
    l.kvalid = k < p.Kg;
    l.w_at = (g * p.Kg + (l.kvalid ? k : 0)) * p.R * p.S * p.Cg;
    return l;
}

template <int VEC>
__device__ void conv_simt_h2_body(const ConvParams &p) {
    constexpr int WPU = VEC == 8 ? 4 : 1, UNITS = 4 / WPU;  // a loader's 4 words, per load
    __shared__ __align__(16) unsigned As[H2_BKW][H2_LD];
    __shared__ __align__(16) unsigned Bs[H2_BKW][H2_LD];
    const int g = blockIdx.z, tid = threadIdx.x;
    const long long M = (long long)p.N * p.P * p.Q, m0 = (long long)blockIdx.x * SIMT_BM;
    const int n0 = blockIdx.y * SIMT_BN, Cp = (p.Cg + 1) >> 1, kwords = p.R * p.S * Cp;
    const int lrow = tid >> 2, lw = (tid & 3) * 4;  // loader: tile row, 4 consecutive words
    const H2Loader l = h2_loader(p, m0 + lrow, n0 + lrow, g);
    H2Tap t[UNITS];
#pragma unroll
    for (int u = 0; u < UNITS; ++u) h2_tap_init(t[u], lw + u * WPU, Cp, p.S);
    const int tx = tid & 15, ty = tid >> 4;
    float acc[4][4] = {};
    half2 h[4][4];
    h2_zero(h);
    for (int k0 = 0; k0 < kwords; k0 += H2_BKW) {
        unsigned ra[4], rb[4];
#pragma unroll
        for (int u = 0; u < UNITS; ++u) {
            h2_load<VEC>(p, l, t[u], ra + u * WPU, rb + u * WPU);
            h2_tap_step(t[u], H2_BKW, Cp, p.S);
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            As[lw + j][lrow] = ra[j];
            Bs[lw + j][lrow] = rb[j];
        }
        __syncthreads();
        h2_chunk(As, Bs, tx, ty, h);
        h2_flush(h, acc);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const long long m = m0 + ty * 4 + i;
#pragma unroll
        for (int j = 0; j < 4; j += 2) {
            const int k = n0 + tx * 4 + j;
            if (m < M && k < p.Kg)
                conv_store2(p, m, g * p.Kg + k, acc[i][j], acc[i][j + 1], k + 1 < p.Kg);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256, 4) conv_simt_h2(ConvParams p) {
    conv_simt_h2_body<1>(p);
}

extern "C" __global__ void __launch_bounds__(256, 4) conv_simt_h2_v8(ConvParams p) {
    conv_simt_h2_body<8>(p);
}

#define TC_BM 64
#define TC_BN 64
#define TC_BK 32
#define TC_LD (TC_BK + 8)

// Load 16 halves of a tile row: two 16-byte loads when VEC == 8, else element by element.
template <int VEC>
__device__ __forceinline__ void load_row16(const half *ptr, int c, int limit, bool ok,
                                           half *dst) {
    if (VEC == 8 && ok && c + 16 <= limit) {
        reinterpret_cast<uint4 *>(dst)[0] = reinterpret_cast<const uint4 *>(ptr + c)[0];
        reinterpret_cast<uint4 *>(dst)[1] = reinterpret_cast<const uint4 *>(ptr + c)[1];
        return;
    }
    for (int j = 0; j < 16; ++j)
        dst[j] = (ok && c + j < limit) ? ptr[c + j] : __float2half(0.f);
}

template <int VEC>
__device__ void conv_wmma_body(const ConvParams &p) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700
    using namespace nvcuda;
    __shared__ __align__(32) half As[TC_BM][TC_LD];
    __shared__ __align__(32) half Bs[TC_BN][TC_LD];
    __shared__ __align__(32) float Cs[TC_BM][TC_BN + 4];
    const int g = blockIdx.z, tid = threadIdx.x, warp = tid >> 5;
    const long long M = (long long)p.N * p.P * p.Q;
    const long long m0 = (long long)blockIdx.x * TC_BM;
    const int n0 = blockIdx.y * TC_BN;
    const int lrow = tid >> 1, lc = (tid & 1) * 16;
    const long long lm = m0 + lrow;
    int img = 0, oh = 0, ow = 0;
    if (lm < M) decode_pixel(p, lm, img, oh, ow);
    const half *xg = conv_x_image(p, img, g);
    const int lk = n0 + lrow;
    const bool kvalid = lk < p.Kg;
    const half *wk = conv_w_row(p, g * p.Kg + (kvalid ? lk : 0));
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
    for (int r = 0; r < p.R; ++r) {
        for (int s = 0; s < p.S; ++s) {
            const int ih = oh * p.sh - p.ph + r * p.dh, iw = ow * p.sw - p.pw + s * p.dw;
            const bool inb = lm < M && ih >= 0 && ih < p.H && iw >= 0 && iw < p.W;
            const half *xp = xg + ((long long)(inb ? ih : 0) * p.W + (inb ? iw : 0)) * p.x_pix;
            const half *wp = wk + (r * p.S + s) * p.Cg;
            for (int c0 = 0; c0 < p.Cg; c0 += TC_BK) {
                __syncthreads();
                load_row16<VEC>(xp, c0 + lc, p.Cg, inb, &As[lrow][lc]);
                load_row16<VEC>(wp, c0 + lc, p.Cg, kvalid, &Bs[lrow][lc]);
                __syncthreads();
#pragma unroll
                for (int kk = 0; kk < TC_BK; kk += 16) {
                    wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> a[2];
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::col_major> b[2];
                    for (int i = 0; i < 2; ++i)
                        wmma::load_matrix_sync(a[i], &As[wm + i * 16][kk], TC_LD);
                    for (int j = 0; j < 2; ++j)
                        wmma::load_matrix_sync(b[j], &Bs[wn + j * 16][kk], TC_LD);
                    for (int i = 0; i < 2; ++i)
                        for (int j = 0; j < 2; ++j)
                            wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
                }
            }
        }
    }
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&Cs[wm + i * 16][wn + j * 16], acc[i][j], TC_BN + 4,
                                    wmma::mem_row_major);
    __syncthreads();
    for (int idx = tid; idx < TC_BM * TC_BN; idx += blockDim.x) {
        const int mi = idx / TC_BN, ni = idx % TC_BN;
        const long long m = m0 + mi;
        const int k = n0 + ni;
        if (m < M && k < p.Kg) conv_store(p, m, g * p.Kg + k, Cs[mi][ni]);
    }
#else
    __trap();  // the host never launches the tensor-core path below sm_70
#endif
}

extern "C" __global__ void __launch_bounds__(128) conv_wmma(ConvParams p) {
    conv_wmma_body<1>(p);
}

extern "C" __global__ void __launch_bounds__(128) conv_wmma_v8(ConvParams p) {
    conv_wmma_body<8>(p);
}

// One thread an output element, channels fastest (coalesced): depthwise and thin groups.
extern "C" __global__ void conv_direct(ConvParams p) {
    const int K = p.Kg * p.groups;
    const long long total = (long long)p.N * p.P * p.Q * K;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int k = (int)(idx % K);
        const long long m = idx / K;
        int img, oh, ow;
        decode_pixel(p, m, img, oh, ow);
        const int g = k / p.Kg;
        const half *xg = conv_x_image(p, img, g);
        const half *wk = conv_w_row(p, k);
        float acc = 0.f;
        for (int r = 0; r < p.R; ++r) {
            const int ih = oh * p.sh - p.ph + r * p.dh;
            if (ih < 0 || ih >= p.H) continue;
            for (int s = 0; s < p.S; ++s) {
                const int iw = ow * p.sw - p.pw + s * p.dw;
                if (iw < 0 || iw >= p.W) continue;
                const half *xp = xg + ((long long)ih * p.W + iw) * p.x_pix;
                const half *wp = wk + (r * p.S + s) * p.Cg;
                for (int c = 0; c < p.Cg; ++c)
                    acc = fmaf(__half2float(xp[c]), __half2float(wp[c]), acc);
            }
        }
        conv_store(p, m, k, acc);
    }
}
