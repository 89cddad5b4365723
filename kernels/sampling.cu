// Spatial sampling over NHWC FP16 images (tx2_infer_core/cuda/lower_sampling.py): GridSample,
// AffineGrid, RoiAlign, as ops/sampling.py computes them, in FP32. A thread owns one output
// pixel and V channels: V = 8 reads 16 bytes per neighbour (channels, pixel strides and channel
// offsets multiples of 8), V = 1 one channel.
#include "common.cuh"

// Codes shared with tx2_infer_core/cuda/lower_sampling.py (GRID_MODES, GRID_PADDING).
#define GS_LINEAR 0
#define GS_NEAREST 1
#define GS_CUBIC 2
#define GS_ZEROS 0
#define GS_BORDER 1
#define GS_REFLECTION 2

struct GridParams {
    const half *x;
    const half *grid;  // (N, P, Q, 2) read with element strides g_n, g_p, g_q, g_c
    half *y;
    int N, C, H, W, P, Q;
    long long g_n, g_p, g_q, g_c;
    int x_pix, x_off, y_pix, y_off;
    int mode, padding, align_corners;
};

struct AffineParams {
    const half *theta;  // (N, 2, 3) with element strides t_n, t_r, t_c
    half *y;            // (N, H, W, 2) with element strides y_n, y_h, y_w, y_c
    int N, H, W;
    long long t_n, t_r, t_c, y_n, y_h, y_w, y_c;
    int align_corners;
};

struct RoiParams {
    const half *x;
    const half *rois;   // (R, 4): x1, y1, x2, y2, element strides r_r, r_c
    const half *index;  // (R,): the image of each region, element stride i_r
    half *y;            // (R, C, P, Q) NHWC
    int N, C, H, W, R, P, Q;
    long long r_r, r_c, i_r;
    int x_pix, x_off, y_pix, y_off;
    int ratio, is_max, half_pixel;
    float scale;
};

// V halves from 16 (V = 8) or 2 bytes, as floats.
template <int V>
__device__ __forceinline__ void load_vec(const half *src, float *v) {
    if (V == 8) {
        const uint4 raw = *reinterpret_cast<const uint4 *>(src);
        const half *h = reinterpret_cast<const half *>(&raw);
#pragma unroll
        for (int i = 0; i < 8; ++i) v[i] = __half2float(h[i]);
    } else {
#pragma unroll
        for (int i = 0; i < V; ++i) v[i] = __half2float(src[i]);
    }
}

template <int V>
__device__ __forceinline__ void store_vec(half *dst, const float *v) {
    if (V == 8) {
        uint4 raw;
        half *h = reinterpret_cast<half *>(&raw);
#pragma unroll
        for (int i = 0; i < 8; ++i) h[i] = __float2half(v[i]);
        *reinterpret_cast<uint4 *>(dst) = raw;
    } else {
#pragma unroll
        for (int i = 0; i < V; ++i) dst[i] = __float2half(v[i]);
    }
}

// ``c`` folded back into [lo, hi] by reflecting at the borders (ops/sampling.py _reflect).
__device__ __forceinline__ float grid_reflect(float c, float lo, float hi) {
    const float span = hi - lo;
    if (span <= 0.f) return 0.f;
    if (c >= lo && c <= hi) return c;
    const bool below = c < lo;
    const float dist = below ? lo - c : c - hi;
    const float turns = floorf(__fdiv_rn(dist, span));
    const float rest = __fsub_rn(dist, __fmul_rn(turns, span));
    const bool even = fmodf(turns, 2.f) == 0.f;
    return (even == below) ? __fadd_rn(lo, rest) : __fsub_rn(hi, rest);
}

// Keys cubic kernel, a = -0.75 (ops/resize.py cubic_kernel).
__device__ __forceinline__ float cubic_weight(float t) {
    const float a = -0.75f;
    t = fabsf(t);
    if (t <= 1.f) return ((a + 2.f) * t - (a + 3.f)) * t * t + 1.f;
    if (t < 2.f) return ((a * t - 5.f * a) * t + 8.f * a) * t - 4.f * a;
    return 0.f;
}

// The pixels (up to 4) that normalised coordinate ``g`` reads along an axis of ``size``
// pixels, and their weights (ops/sampling.py _grid_taps and _pad_tap); returns the count.
__device__ __forceinline__ int grid_taps(float g, int size, const GridParams &p, int *index,
                                         float *weight) {
    // no fused multiply-adds: nearest rounds ties as numpy's float32 maths does
    float c = p.align_corners ? __fmul_rn(__fadd_rn(g, 1.f) * 0.5f, (float)(size - 1))
                              : __fsub_rn(__fmul_rn(__fadd_rn(g, 1.f), (float)size), 1.f)
                                    * 0.5f;
    const float lo = p.align_corners ? 0.f : -0.5f;
    const float hi = p.align_corners ? (float)(size - 1) : size - 0.5f;
    if (p.mode == GS_NEAREST) c = rintf(c);  // half to even
    if (p.padding == GS_BORDER && (c < lo || c > hi)) c = fminf(fmaxf(c, 0.f), size - 1.f);
    if (p.padding == GS_REFLECTION) c = grid_reflect(c, lo, hi);
    int n;
    if (p.mode == GS_NEAREST) {
        n = 1;
        index[0] = (int)c;
        weight[0] = 1.f;
    } else {
        const float first = floorf(c), frac = c - first;
        n = p.mode == GS_CUBIC ? 4 : 2;
        const int k0 = p.mode == GS_CUBIC ? -1 : 0;
        for (int k = 0; k < n; ++k) {
            index[k] = (int)first + k0 + k;
            weight[k] = p.mode == GS_CUBIC ? cubic_weight((float)(k0 + k) - frac)
                                           : (k == 0 ? 1.f - frac : frac);
        }
    }
    for (int k = 0; k < n; ++k) {
        if (p.padding == GS_ZEROS && (index[k] < 0 || index[k] >= size)) weight[k] *= 0.f;
        if (p.padding == GS_REFLECTION) index[k] = (int)grid_reflect((float)index[k], lo, hi);
        index[k] = min(max(index[k], 0), size - 1);
    }
    return n;
}

template <int V>
__device__ __forceinline__ void grid_sample_body(const GridParams &p) {
    const int groups = p.C / V;
    const long long total = (long long)p.N * p.P * p.Q * groups;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(idx % groups) * V;
        const long long m = idx / groups;
        int n, oh, ow;
        tx2_decode_pixel(m, p.P, p.Q, n, oh, ow);
        const half *g = p.grid + n * p.g_n + oh * p.g_p + ow * p.g_q;
        int iy[4], ix[4];
        float wy[4], wx[4];
        const int ny = grid_taps(__half2float(g[p.g_c]), p.H, p, iy, wy);
        const int nx = grid_taps(__half2float(g[0]), p.W, p, ix, wx);
        const half *xn = p.x + (long long)n * p.H * p.W * p.x_pix + p.x_off + c;
        float acc[V], v[V];
#pragma unroll
        for (int i = 0; i < V; ++i) acc[i] = 0.f;
        for (int a = 0; a < ny; ++a) {
            for (int b = 0; b < nx; ++b) {
                const float w = wy[a] * wx[b];
                load_vec<V>(xn + ((long long)iy[a] * p.W + ix[b]) * p.x_pix, v);
#pragma unroll
                for (int i = 0; i < V; ++i) acc[i] += w * v[i];
            }
        }
        store_vec<V>(p.y + m * p.y_pix + p.y_off + c, acc);
    }
}

extern "C" __global__ void grid_sample(GridParams p) { grid_sample_body<1>(p); }
extern "C" __global__ void grid_sample_v8(GridParams p) { grid_sample_body<8>(p); }

// The AffineGrid base coordinate of pixel ``i`` of ``n``: pixel centres, or corners.
__device__ __forceinline__ float affine_base(int i, int n, int align_corners) {
    if (align_corners) return n > 1 ? -1.f + i * (2.f / (n - 1)) : -1.f;
    return (2.f * i + 1.f) / n - 1.f;
}

// One thread per output point: (x, y) = theta[n] (base x, base y, 1).
extern "C" __global__ void affine_grid(AffineParams p) {
    const long long total = (long long)p.N * p.H * p.W;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        int n, h, w;
        tx2_decode_pixel(idx, p.H, p.W, n, h, w);
        const float bx = affine_base(w, p.W, p.align_corners);
        const float by = affine_base(h, p.H, p.align_corners);
        half *out = p.y + n * p.y_n + h * p.y_h + w * p.y_w;
        for (int r = 0; r < 2; ++r) {
            const half *t = p.theta + n * p.t_n + r * p.t_r;
            const float v = __half2float(t[0]) * bx + __half2float(t[p.t_c]) * by
                            + __half2float(t[2 * p.t_c]);
            out[r * p.y_c] = __float2half(v);
        }
    }
}

// One ROI axis's sample ``s`` of bin ``b``: the low pixel, the high one and their weights
// (ops/sampling.py _roi_samples).
__device__ __forceinline__ void roi_tap(float start, float step, int b, int s, int count,
                                        int size, int &low, int &high, float &wl, float &wh) {
    float pos = start + b * step + (s + 0.5f) * step / (float)count;
    const float valid = (pos >= -1.f && pos <= size) ? 1.f : 0.f;
    pos = fmaxf(pos, 0.f);
    low = min((int)pos, size - 1);
    high = min(low + 1, size - 1);
    const float frac = low >= size - 1 ? 0.f : pos - low;
    wl = (1.f - frac) * valid;
    wh = frac * valid;
}

// Samples per bin along an axis of ``length`` pixels split into ``bins``.
__device__ __forceinline__ int roi_count(int ratio, float length, int bins) {
    return ratio > 0 ? ratio : (int)ceilf(length / bins);
}

template <int V>
__device__ __forceinline__ void roi_align_body(const RoiParams &p) {
    const int groups = p.C / V;
    const long long total = (long long)p.R * p.P * p.Q * groups;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(idx % groups) * V;
        const long long m = idx / groups;
        int r, ph, pw;
        tx2_decode_pixel(m, p.P, p.Q, r, ph, pw);
        const half *roi = p.rois + r * p.r_r;
        const float shift = p.half_pixel ? 0.5f : 0.f;
        const float left = __half2float(roi[0]) * p.scale - shift;
        const float top = __half2float(roi[p.r_c]) * p.scale - shift;
        float right = __half2float(roi[2 * p.r_c]) * p.scale - shift;
        float bottom = __half2float(roi[3 * p.r_c]) * p.scale - shift;
        if (!p.half_pixel) {  // legacy: at least one pixel wide and high
            right = fmaxf(right, left + 1.f);
            bottom = fmaxf(bottom, top + 1.f);
        }
        const int n = min(max((int)__half2float(p.index[r * p.i_r]), 0), p.N - 1);
        const float height = bottom - top, width = right - left;
        const int cy = roi_count(p.ratio, height, p.P), cx = roi_count(p.ratio, width, p.Q);
        const float sy = height / p.P, sx = width / p.Q;
        const half *xn = p.x + (long long)n * p.H * p.W * p.x_pix + p.x_off + c;
        float acc[V], v[V];
#pragma unroll
        for (int i = 0; i < V; ++i) acc[i] = p.is_max ? -TX2_INF : 0.f;
        for (int a = 0; a < cy; ++a) {
            int ys[2];
            float wys[2];
            roi_tap(top, sy, ph, a, cy, p.H, ys[0], ys[1], wys[0], wys[1]);
            for (int b = 0; b < cx; ++b) {
                int xs[2];
                float wxs[2];
                roi_tap(left, sx, pw, b, cx, p.W, xs[0], xs[1], wxs[0], wxs[1]);
                for (int k = 0; k < 4; ++k) {
                    const float w = wys[k >> 1] * wxs[k & 1];
                    load_vec<V>(xn + ((long long)ys[k >> 1] * p.W + xs[k & 1]) * p.x_pix, v);
#pragma unroll
                    for (int i = 0; i < V; ++i)
                        acc[i] = p.is_max ? fmaxf(acc[i], w * v[i]) : acc[i] + w * v[i];
                }
            }
        }
        const bool empty = cy <= 0 || cx <= 0;
        const float count = (float)max(cy * cx, 1);
#pragma unroll
        for (int i = 0; i < V; ++i) acc[i] = empty ? 0.f : p.is_max ? acc[i] : acc[i] / count;
        store_vec<V>(p.y + m * p.y_pix + p.y_off + c, acc);
    }
}

extern "C" __global__ void roi_align(RoiParams p) { roi_align_body<1>(p); }
extern "C" __global__ void roi_align_v8(RoiParams p) { roi_align_body<8>(p); }
