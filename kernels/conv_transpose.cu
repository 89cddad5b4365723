// Fused transposed convolution (ConvTranspose, "deconvolution"), NHWC FP16 in and out, FP32
// accumulation, with the FusedConv epilogue of conv.cuh (bias, activation, residual).
// Computed as a gather: output pixel (oh, ow), channel k of group g sums
//   x[ih][iw][g*Cg + c] * w[k][r][s][c]   over the taps with  oh + ph - r*dh == ih*sh
// (0 <= ih < H; likewise for columns). ConvParams: H, W the input size, P, Q the output size,
// Cg input and Kg output channels a group, ph, pw the begin pads (may be negative). The host
// repacks the ONNX weights [C_in][Kg][R][S] to [K][R][S][Cg] (conv_w_row's layout).
// The output pixels are split in sh*sw phases (oh % sh, ow % sw): all pixels of a phase use
// the same taps, so a CTA (one phase, one group: blockIdx.z = g * sh*sw + phase) skips the
// taps of the other phases whole. Grid: (ceil(N*ceil(P/sh)*ceil(Q/sw) / 64), ceil(Kg / 64),
// groups*sh*sw); a CTA past its phase's pixels returns at once.
// convt_simt (half2 loads, FP32 FMA; any arch, Pascal sm_62 included) and convt_wmma (tensor
// cores, sm_70+); VEC: 1 = scalar loads, else VEC-half vector loads (host checks alignment).
#include "conv.cuh"
#include <mma.h>

#define CONVT_BM 64
#define CONVT_BN 64
#define CONVT_BK 16
#define CONVT_TC_BK 32
#define CONVT_TC_LD (CONVT_TC_BK + 8)

// The phase a CTA computes: group, row and column phase, its output rows and columns.
struct ConvtPhase {
    int g, a, b, Pa, Qb;
    long long M;  // N * Pa * Qb pixels
};

__device__ __forceinline__ ConvtPhase convt_phase(const ConvParams &p) {
    ConvtPhase f;
    const int phases = p.sh * p.sw, z = blockIdx.z;
    f.g = z / phases;
    f.a = (z % phases) / p.sw;
    f.b = z % p.sw;
    f.Pa = f.a < p.P ? (p.P - f.a + p.sh - 1) / p.sh : 0;
    f.Qb = f.b < p.Q ? (p.Q - f.b + p.sw - 1) / p.sw : 0;
    f.M = (long long)p.N * f.Pa * f.Qb;
    return f;
}

// Pixel m of the phase -> image, output row and column; returns its index over all pixels.
__device__ __forceinline__ long long convt_pixel(const ConvParams &p, const ConvtPhase &f,
                                                 long long m, int &img, int &oh, int &ow) {
    int i, j;
    tx2_decode_pixel(m, f.Pa, f.Qb, img, i, j);
    oh = f.a + i * p.sh;
    ow = f.b + j * p.sw;
    return ((long long)img * p.P + oh) * p.Q + ow;
}

// True when kernel tap r reads input rows for outputs of phase a: (a + pad - r*d) % s == 0.
__device__ __forceinline__ bool convt_tap(int a, int pad, int r, int d, int s) {
    return (a + pad - r * d) % s == 0;  // a negative remainder is 0 exactly when divisible
}

// The input pixel of output (oh, ow) at tap (r, s) of its phase; false when outside.
__device__ __forceinline__ bool convt_input(const ConvParams &p, int oh, int ow, int r, int s,
                                            int &ih, int &iw) {
    const int th = oh + p.ph - r * p.dh, tw = ow + p.pw - s * p.dw;
    ih = th >= 0 ? th / p.sh : 0;
    iw = tw >= 0 ? tw / p.sw : 0;
    return th >= 0 && tw >= 0 && ih < p.H && iw < p.W;
}

// Load ``n`` consecutive halves at ptr[c..c+n) as floats, zero where c >= limit or !ok.
template <int VEC>
__device__ __forceinline__ void convt_load(const half *ptr, int c, int limit, bool ok,
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

template <int VEC>
__device__ void convt_simt_body(const ConvParams &p) {
    __shared__ float As[CONVT_BK][CONVT_BM + 4];
    __shared__ float Bs[CONVT_BK][CONVT_BN + 4];
    const ConvtPhase f = convt_phase(p);
    const long long m0 = (long long)blockIdx.x * CONVT_BM;
    if (m0 >= f.M) return;  // uniform over the CTA
    const int tid = threadIdx.x, n0 = blockIdx.y * CONVT_BN;
    const int lrow = tid >> 2, lc = (tid & 3) * 4;  // loader: row of the tile, 4 channels
    const long long lm = m0 + lrow;
    int img = 0, oh = 0, ow = 0;
    if (lm < f.M) convt_pixel(p, f, lm, img, oh, ow);
    const half *xg = conv_x_image(p, img, f.g);
    const int lk = n0 + lrow;
    const bool kvalid = lk < p.Kg;
    const half *wk = conv_w_row(p, f.g * p.Kg + (kvalid ? lk : 0));
    const int tx = tid & 15, ty = tid >> 4;
    float acc[4][4] = {};
    for (int r = 0; r < p.R; ++r) {
        if (!convt_tap(f.a, p.ph, r, p.dh, p.sh)) continue;
        for (int s = 0; s < p.S; ++s) {
            if (!convt_tap(f.b, p.pw, s, p.dw, p.sw)) continue;
            int ih, iw;
            const bool inb = convt_input(p, oh, ow, r, s, ih, iw) && lm < f.M;
            const half *xp = xg + ((long long)ih * p.W + iw) * p.x_pix;
            const half *wp = wk + (r * p.S + s) * p.Cg;
            for (int c0 = 0; c0 < p.Cg; c0 += CONVT_BK) {
                float a4[4], b4[4];
                convt_load<VEC>(xp, c0 + lc, p.Cg, inb, a4, 4);
                convt_load<VEC>(wp, c0 + lc, p.Cg, kvalid, b4, 4);
                __syncthreads();
                for (int j = 0; j < 4; ++j) {
                    As[lc + j][lrow] = a4[j];
                    Bs[lc + j][lrow] = b4[j];
                }
                __syncthreads();
#pragma unroll
                for (int kk = 0; kk < CONVT_BK; ++kk) {
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
        if (m >= f.M) continue;
        int oi, oj, on;
        const long long out = convt_pixel(p, f, m, on, oi, oj);
        for (int j = 0; j < 4; ++j) {
            const int k = n0 + tx * 4 + j;
            if (k < p.Kg) conv_store(p, out, f.g * p.Kg + k, acc[i][j]);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) convt_simt(ConvParams p) {
    convt_simt_body<1>(p);
}

extern "C" __global__ void __launch_bounds__(256) convt_simt_v4(ConvParams p) {
    convt_simt_body<4>(p);
}

// Load 16 halves of a tile row: two 16-byte loads when VEC == 8, else element by element.
template <int VEC>
__device__ __forceinline__ void convt_row16(const half *ptr, int c, int limit, bool ok,
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
__device__ void convt_wmma_body(const ConvParams &p) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700
    using namespace nvcuda;
    __shared__ __align__(32) half As[CONVT_BM][CONVT_TC_LD];
    __shared__ __align__(32) half Bs[CONVT_BN][CONVT_TC_LD];
    __shared__ __align__(32) float Cs[CONVT_BM][CONVT_BN + 4];
    const ConvtPhase f = convt_phase(p);
    const long long m0 = (long long)blockIdx.x * CONVT_BM;
    if (m0 >= f.M) return;  // uniform over the CTA
    const int tid = threadIdx.x, warp = tid >> 5, n0 = blockIdx.y * CONVT_BN;
    const int lrow = tid >> 1, lc = (tid & 1) * 16;
    const long long lm = m0 + lrow;
    int img = 0, oh = 0, ow = 0;
    if (lm < f.M) convt_pixel(p, f, lm, img, oh, ow);
    const half *xg = conv_x_image(p, img, f.g);
    const int lk = n0 + lrow;
    const bool kvalid = lk < p.Kg;
    const half *wk = conv_w_row(p, f.g * p.Kg + (kvalid ? lk : 0));
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
    for (int r = 0; r < p.R; ++r) {
        if (!convt_tap(f.a, p.ph, r, p.dh, p.sh)) continue;
        for (int s = 0; s < p.S; ++s) {
            if (!convt_tap(f.b, p.pw, s, p.dw, p.sw)) continue;
            int ih, iw;
            const bool inb = convt_input(p, oh, ow, r, s, ih, iw) && lm < f.M;
            const half *xp = xg + ((long long)ih * p.W + iw) * p.x_pix;
            const half *wp = wk + (r * p.S + s) * p.Cg;
            for (int c0 = 0; c0 < p.Cg; c0 += CONVT_TC_BK) {
                __syncthreads();
                convt_row16<VEC>(xp, c0 + lc, p.Cg, inb, &As[lrow][lc]);
                convt_row16<VEC>(wp, c0 + lc, p.Cg, kvalid, &Bs[lrow][lc]);
                __syncthreads();
#pragma unroll
                for (int kk = 0; kk < CONVT_TC_BK; kk += 16) {
                    wmma::fragment<wmma::matrix_a, 16, 16, 16, half, wmma::row_major> a[2];
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, half, wmma::col_major> b[2];
                    for (int i = 0; i < 2; ++i)
                        wmma::load_matrix_sync(a[i], &As[wm + i * 16][kk], CONVT_TC_LD);
                    for (int j = 0; j < 2; ++j)
                        wmma::load_matrix_sync(b[j], &Bs[wn + j * 16][kk], CONVT_TC_LD);
                    for (int i = 0; i < 2; ++i)
                        for (int j = 0; j < 2; ++j)
                            wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
                }
            }
        }
    }
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&Cs[wm + i * 16][wn + j * 16], acc[i][j], CONVT_BN + 4,
                                    wmma::mem_row_major);
    __syncthreads();
    for (int idx = tid; idx < CONVT_BM * CONVT_BN; idx += blockDim.x) {
        const int mi = idx / CONVT_BN, ni = idx % CONVT_BN;
        const long long m = m0 + mi;
        const int k = n0 + ni;
        if (m >= f.M || k >= p.Kg) continue;
        int oi, oj, on;
        const long long out = convt_pixel(p, f, m, on, oi, oj);
        conv_store(p, out, f.g * p.Kg + k, Cs[mi][ni]);
    }
#else
    __trap();  // the host never launches the tensor-core path below sm_70
#endif
}

extern "C" __global__ void __launch_bounds__(128) convt_wmma(ConvParams p) {
    convt_wmma_body<1>(p);
}

extern "C" __global__ void __launch_bounds__(128) convt_wmma_v8(ConvParams p) {
    convt_wmma_body<8>(p);
}
