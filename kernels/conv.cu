// Fused convolution, NHWC FP16 in and out, FP32 accumulation:
//   y = act(conv(x, w) + bias + residual)      (res_after == 0)
//   y = act(conv(x, w) + bias) + residual      (res_after == 1)
// Implicit GEMM: M = N*P*Q output pixels, N_gemm = Kg output channels of a group,
// K_gemm = R*S*Cg. Weights are [K][R][S][Cg] (OHWI), bias is FP32.
// Three kernels: conv_simt (half2 loads, FP32 FMA; any arch, Pascal sm_62 included),
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
