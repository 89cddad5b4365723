// conv_h2: the half2 SIMT implicit-GEMM convolution (what a Jetson TX2, sm_62, runs), NHWC
// FP16 in and out, the fused epilogue of conv.cuh. M = N*P*Q pixels, N = Kg channels of a
// group, k = the flattened (r, s, channel) in 32-bit words of two channels.
// The SGEMM recipe on HFMA2: a CTA computes BM x BN outputs with BM * BN / 64 threads, 8 x 8
// a thread (two 4 x 4 quadrants, BM / 2 and BN / 2 apart: 16-byte shared loads of 4 words
// without bank conflicts); k runs in chunks of H2_KW words staged in shared memory, two
// buffers: the next chunk's global words are loaded into registers while this one multiplies
// (plain loads: no cp.async on sm_62), one __syncthreads a chunk. Each pixel's first input
// row, column and element offset are worked out once, in a shared table; a chunk's tap
// (r, s, channel) once per thread.
// Arithmetic (the contract of conv.cu's conv_simt_h2): a word holds two consecutive k values
// (channels c, c + 1), __hfma2 sums each lane's products in FP16 for one chunk of 16 words,
// then the chunk is flushed: lo + hi in FP16, converted, added to the output's FP32 sum.
// Loaders: rows (CONV_H2_GATHER 0: Cg, x_pix, x_off multiples of 8, a thread's 4 words one
// 16-byte load inside one tap); gather (1: any layer, two 2-byte loads a word, k flattened
// over (r, s, c) in halves, so an odd Cg's taps share words: the 3-channel stem's 27 halves
// are 14 words, one chunk).
// -DCONV_H2_TILE=BM*1000+BN and -DCONV_H2_GATHER=0|1 build one kernel (cuda/lower_conv.py).
#include "conv.cuh"

#define H2_KW 16  // words a chunk: the FP16 products a lane sums between flushes

__device__ __forceinline__ half2 h2w(unsigned u) {
    half2 h;
    memcpy(&h, &u, sizeof h);
    return h;
}

__device__ __forceinline__ unsigned h2u(half x, half y) {
    const half2 h = __halves2half2(x, y);
    unsigned u;
    memcpy(&u, &h, sizeof u);
    return u;
}

// Threads of a BM x BN tile. A shared row holds BM + 4 (BN + 4) words: 16-byte aligned, and
// a warp's stores of 4 words to 16 rows hit 32 banks.
template <int BM, int BN>
__host__ __device__ constexpr int h2_threads() {
    return BM * BN / 64;
}

// A pixel's loader entry: first input row and column (oh * sh - ph, ow * sw - pw; a row far
// out of range where the pixel is past M) and the element offset of its (row, column) at
// channel 0 of the group (may be negative: only read where the tap is inside the image).
__device__ __forceinline__ int4 h2_pixel(const ConvParams &p, long long m, long long M, int g) {
    if (m >= M) return make_int4(-(1 << 30), 0, 0, 0);
    int img, oh, ow;
    decode_pixel(p, m, img, oh, ow);
    const int ih0 = oh * p.sh - p.ph, iw0 = ow * p.sw - p.pw;
    return make_int4(ih0, iw0, img * p.H * p.W * p.x_pix + p.x_off + g * p.Cg
                     + (ih0 * p.W + iw0) * p.x_pix, 0);
}

// Where k value (a half index into the flattened (r, s, c)) reads, relative to a pixel's
// entry: row and column steps and element offset; ``in`` false past k.
struct H2Tap {
    int dr, ds, off, in;
};

__device__ __forceinline__ H2Tap h2_tap(const ConvParams &p, int k) {
    const int rs = k / p.Cg, c = k - rs * p.Cg, r = rs / p.S, s = rs - r * p.S;
    H2Tap t;
    t.in = r < p.R;
    t.dr = r * p.dh;
    t.ds = s * p.dw;
    t.off = (t.dr * p.W + t.ds) * p.x_pix + c;
    return t;
}

__device__ __forceinline__ bool h2_inside(const ConvParams &p, int4 e, const H2Tap &t) {
    return t.in && (unsigned)(e.x + t.dr) < (unsigned)p.H && (unsigned)(e.y + t.ds) < (unsigned)p.W;
}

// The element offset of output channel n's weights (OHWI, [R][S][Cg] a channel); -1 past Kg.
__device__ __forceinline__ int h2_wrow(const ConvParams &p, int n, int g) {
    return n < p.Kg ? (g * p.Kg + n) * p.R * p.S * p.Cg : -1;
}

// The rows loader: thread ``tid`` loads words 4u .. 4u + 3 of the chunk (u = tid / RP) of
// rows tid % RP + i * RP, one 16-byte load each.
template <int BM, int BN>
struct H2Rows {
    static constexpr int RP = h2_threads<BM, BN>() / 4, NA = BM / RP, NB = BN / RP;
    uint4 a[NA], b[NB];

    __device__ __forceinline__ void load(const ConvParams &p, const int4 *pix, int n0, int g,
                                         int k0, int tid) {
        const int u = tid / RP, row = tid % RP, kw = k0 + 4 * u;
        const H2Tap t = h2_tap(p, 2 * kw);  // Cg even: a word never straddles taps
        const uint4 zero = make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int i = 0; i < NA; ++i) {
            const int4 e = pix[row + i * RP];
            a[i] = h2_inside(p, e, t) ? *reinterpret_cast<const uint4 *>(p.x + e.z + t.off)
                                      : zero;
        }
#pragma unroll
        for (int i = 0; i < NB; ++i) {
            const int w = h2_wrow(p, n0 + row + i * RP, g);
            b[i] = (w >= 0 && t.in) ? *reinterpret_cast<const uint4 *>(p.w + w + 2 * kw) : zero;
        }
    }

    __device__ __forceinline__ void store(unsigned (*As)[BM + 4], unsigned (*Bs)[BN + 4],
                                          int tid) const {
        const int u = tid / RP, row = tid % RP;
#pragma unroll
        for (int i = 0; i < NA; ++i) {
            As[4 * u][row + i * RP] = a[i].x;
            As[4 * u + 1][row + i * RP] = a[i].y;
            As[4 * u + 2][row + i * RP] = a[i].z;
            As[4 * u + 3][row + i * RP] = a[i].w;
        }
#pragma unroll
        for (int i = 0; i < NB; ++i) {
            Bs[4 * u][row + i * RP] = b[i].x;
            Bs[4 * u + 1][row + i * RP] = b[i].y;
            Bs[4 * u + 2][row + i * RP] = b[i].z;
            Bs[4 * u + 3][row + i * RP] = b[i].w;
        }
    }
};

// The gather loader: thread ``tid`` loads word tid % 16 of the chunk (two halves, each its
// own tap) of rows tid / 16 + i * (T / 16).
template <int BM, int BN>
struct H2Gather {
    static constexpr int RP = h2_threads<BM, BN>() / 16, NA = BM / RP, NB = BN / RP;
    unsigned a[NA], b[NB];

    __device__ __forceinline__ void load(const ConvParams &p, const int4 *pix, int n0, int g,
                                         int k0, int tid) {
        const int k = 2 * (k0 + tid % 16), row = tid / 16, K = p.R * p.S * p.Cg;
        const H2Tap t0 = h2_tap(p, k), t1 = h2_tap(p, k + 1);
        const half zero = __float2half(0.f);
#pragma unroll
        for (int i = 0; i < NA; ++i) {
            const int4 e = pix[row + i * RP];
            a[i] = h2u(h2_inside(p, e, t0) ? p.x[e.z + t0.off] : zero,
                       h2_inside(p, e, t1) ? p.x[e.z + t1.off] : zero);
        }
#pragma unroll
        for (int i = 0; i < NB; ++i) {
            const int w = h2_wrow(p, n0 + row + i * RP, g);
            b[i] = h2u(w >= 0 && k < K ? p.w[w + k] : zero,
                       w >= 0 && k + 1 < K ? p.w[w + k + 1] : zero);
        }
    }

    __device__ __forceinline__ void store(unsigned (*As)[BM + 4], unsigned (*Bs)[BN + 4],
                                          int tid) const {
        const int kw = tid % 16, row = tid / 16;
#pragma unroll
        for (int i = 0; i < NA; ++i) As[kw][row + i * RP] = a[i];
#pragma unroll
        for (int i = 0; i < NB; ++i) Bs[kw][row + i * RP] = b[i];
    }
};

// The 4 words at ``v`` as half2.
__device__ __forceinline__ void h2_quad(const unsigned *v, half2 *out) {
    const uint4 q = *reinterpret_cast<const uint4 *>(v);
    out[0] = h2w(q.x);
    out[1] = h2w(q.y);
    out[2] = h2w(q.z);
    out[3] = h2w(q.w);
}

// One chunk from the shared tiles into the 8 x 8 outputs' FP16 lane sums ``h`` (the first
// word multiplies: a chunk starts from zero).
template <int BM, int BN>
__device__ __forceinline__ void h2_mul_chunk(const unsigned (*As)[BM + 4],
                                             const unsigned (*Bs)[BN + 4], int tx, int ty,
                                             half2 (&h)[8][8]) {
#pragma unroll
    for (int kk = 0; kk < H2_KW; ++kk) {
        half2 a[8], b[8];
        h2_quad(&As[kk][ty * 4], a);
        h2_quad(&As[kk][BM / 2 + ty * 4], a + 4);
        h2_quad(&Bs[kk][tx * 4], b);
        h2_quad(&Bs[kk][BN / 2 + tx * 4], b + 4);
#pragma unroll
        for (int i = 0; i < 8; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j)
                h[i][j] = kk == 0 ? __hmul2_rn(a[i], b[j]) : __hfma2(a[i], b[j], h[i][j]);
    }
}

// The flush: each output's two lanes summed in FP16, added to its FP32 sum.
__device__ __forceinline__ void h2_flush8(const half2 (&h)[8][8], float (&acc)[8][8]) {
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j)
            acc[i][j] += __half2float(__hadd(__low2half(h[i][j]), __high2half(h[i][j])));
}

// Thread (tx, ty)'s outputs: epilogue and FP16 stores, two channels at a time.
template <int BM, int BN>
__device__ __forceinline__ void h2_store8(const ConvParams &p, const float (&acc)[8][8],
                                          long long m0, int n0, int g, int tx, int ty,
                                          long long M) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const long long m = m0 + (i < 4 ? ty * 4 + i : BM / 2 + ty * 4 + i - 4);
#pragma unroll
        for (int j = 0; j < 8; j += 2) {
            const int k = n0 + (j < 4 ? tx * 4 + j : BN / 2 + tx * 4 + j - 4);
            if (m < M && k < p.Kg)
                conv_store2(p, m, g * p.Kg + k, acc[i][j], acc[i][j + 1], k + 1 < p.Kg);
        }
    }
}

template <int BM, int BN, class Loader>
__device__ __forceinline__ void conv_h2_body(const ConvParams &p) {
    constexpr int T = h2_threads<BM, BN>();
    __shared__ __align__(16) unsigned As[2][H2_KW][BM + 4];
    __shared__ __align__(16) unsigned Bs[2][H2_KW][BN + 4];
    __shared__ int4 pix[BM];
    const int g = blockIdx.z, tid = threadIdx.x, n0 = blockIdx.y * BN;
    const long long M = (long long)p.N * p.P * p.Q, m0 = (long long)blockIdx.x * BM;
    for (int i = tid; i < BM; i += T) pix[i] = h2_pixel(p, m0 + i, M, g);
    const int kwords = (p.R * p.S * p.Cg + 1) >> 1, chunks = (kwords + H2_KW - 1) / H2_KW;
    const int tx = tid % (BN / 8), ty = tid / (BN / 8);
    float acc[8][8] = {};
    half2 h[8][8];
    Loader ld;
    __syncthreads();
    ld.load(p, pix, n0, g, 0, tid);
    ld.store(As[0], Bs[0], tid);
    __syncthreads();
    for (int c = 0; c < chunks; ++c) {
        const bool more = c + 1 < chunks;
        if (more) ld.load(p, pix, n0, g, (c + 1) * H2_KW, tid);
        h2_mul_chunk<BM, BN>(As[c & 1], Bs[c & 1], tx, ty, h);
        h2_flush8(h, acc);
        if (more) ld.store(As[(c + 1) & 1], Bs[(c + 1) & 1], tid);
        __syncthreads();
    }
    h2_store8<BM, BN>(p, acc, m0, n0, g, tx, ty, M);
}

#define CONV_H2_KERNEL(BM, BN, NAME, LOADER)                                                   \
    extern "C" __global__ void __launch_bounds__(BM * BN / 64, 1)                               \
        NAME##_##BM##x##BN(ConvParams p) {                                                     \
        conv_h2_body<BM, BN, LOADER<BM, BN>>(p);                                               \
    }

#if !defined(CONV_H2_GATHER) || CONV_H2_GATHER == 0
#define CONV_H2_ROWS(BM, BN) CONV_H2_KERNEL(BM, BN, conv_h2, H2Rows)
#else
#define CONV_H2_ROWS(BM, BN)
#endif
#if !defined(CONV_H2_GATHER) || CONV_H2_GATHER == 1
#define CONV_H2_GATHERS(BM, BN) CONV_H2_KERNEL(BM, BN, conv_h2g, H2Gather)
#else
#define CONV_H2_GATHERS(BM, BN)
#endif
#ifdef CONV_H2_TILE
#define CONV_H2_WANT(BM, BN) (CONV_H2_TILE == (BM) * 1000 + (BN))
#else
#define CONV_H2_WANT(BM, BN) 1
#endif

// The tiles (BM, BN) of H2_TILES in cuda/simt_tiles.py; at most 128 threads: sm_62 gives a
// CTA 32K registers, and a thread of 8 x 8 outputs needs ~230 (no 128 x 128 on 256 threads).
#if CONV_H2_WANT(128, 64)
CONV_H2_ROWS(128, 64)
CONV_H2_GATHERS(128, 64)
#endif
#if CONV_H2_WANT(64, 128)
CONV_H2_ROWS(64, 128)
CONV_H2_GATHERS(64, 128)
#endif
#if CONV_H2_WANT(64, 64)
CONV_H2_ROWS(64, 64)
CONV_H2_GATHERS(64, 64)
#endif
#if CONV_H2_WANT(128, 32)
CONV_H2_ROWS(128, 32)
CONV_H2_GATHERS(128, 32)
#endif
