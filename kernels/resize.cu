// Resize of NHWC FP16 views: nearest and (bi)linear, ONNX coordinate transformation modes.
#include "common.cuh"

// Codes shared with tx2_infer_core/cuda/params.py (RESIZE_COORD, RESIZE_NEAREST).
#define CT_HALF_PIXEL 0
#define CT_ASYMMETRIC 1
#define CT_ALIGN_CORNERS 2
#define CT_PYTORCH_HALF_PIXEL 3
#define CT_HALF_PIXEL_SYMMETRIC 4
#define NR_ROUND_PREFER_FLOOR 0
#define NR_ROUND_PREFER_CEIL 1
#define NR_FLOOR 2
#define NR_CEIL 3

struct ResizeParams {
    const half *x;
    half *y;
    int N, H, W, C, P, Q;
    float scale_h, scale_w;  // ONNX scales (output / input)
    float len_h, len_w;      // input size * scale: the unrounded output length ONNX uses
    int coord, linear, nearest;
    int x_pix, x_off, y_pix, y_off;
};

// The input coordinate of output index o (ONNX Resize): ``len`` is in * scale, ``out`` the
// integer output size.
__device__ __forceinline__ float src_coord(int o, float scale, int in, float len, int out,
                                           int coord) {
    switch (coord) {
    case CT_ASYMMETRIC: return o / scale;
    case CT_ALIGN_CORNERS: return len == 1.f ? 0.f : o * (float)(in - 1) / (len - 1.f);
    case CT_PYTORCH_HALF_PIXEL: return len == 1.f ? -0.5f : (o + 0.5f) / scale - 0.5f;
    case CT_HALF_PIXEL_SYMMETRIC: {
        const float offset = 0.5f * in * (1.f - out / len);
        return offset + (o + 0.5f) / scale - 0.5f;
    }
    default: return (o + 0.5f) / scale - 0.5f;
    }
}

__device__ __forceinline__ int nearest_index(float v, int mode, int in) {
    int i;
    switch (mode) {
    case NR_ROUND_PREFER_CEIL: i = (int)floorf(v + 0.5f); break;
    case NR_FLOOR: i = (int)floorf(v); break;
    case NR_CEIL: i = (int)ceilf(v); break;
    default: i = (v == floorf(v) + 0.5f) ? (int)floorf(v) : (int)roundf(v);
    }
    return min(max(i, 0), in - 1);
}

extern "C" __global__ void resize2d(ResizeParams p) {
    const long long total = (long long)p.N * p.P * p.Q * p.C;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(idx % p.C);
        const long long m = idx / p.C;
        int n, oh, ow;
        tx2_decode_pixel(m, p.P, p.Q, n, oh, ow);
        const float fy = src_coord(oh, p.scale_h, p.H, p.len_h, p.P, p.coord);
        const float fx = src_coord(ow, p.scale_w, p.W, p.len_w, p.Q, p.coord);
        const half *xn = p.x + (long long)n * p.H * p.W * p.x_pix + p.x_off + c;
        float v;
        if (!p.linear) {
            const int iy = nearest_index(fy, p.nearest, p.H);
            const int ix = nearest_index(fx, p.nearest, p.W);
            v = __half2float(xn[((long long)iy * p.W + ix) * p.x_pix]);
        } else {
            const float cy = fminf(fmaxf(fy, 0.f), p.H - 1), cx = fminf(fmaxf(fx, 0.f), p.W - 1);
            const int y0 = (int)cy, x0 = (int)cx;
            const int y1 = min(y0 + 1, p.H - 1), x1 = min(x0 + 1, p.W - 1);
            const float wy = cy - y0, wx = cx - x0;
            const float v00 = __half2float(xn[((long long)y0 * p.W + x0) * p.x_pix]);
            const float v01 = __half2float(xn[((long long)y0 * p.W + x1) * p.x_pix]);
            const float v10 = __half2float(xn[((long long)y1 * p.W + x0) * p.x_pix]);
            const float v11 = __half2float(xn[((long long)y1 * p.W + x1) * p.x_pix]);
            v = (v00 * (1 - wx) + v01 * wx) * (1 - wy) + (v10 * (1 - wx) + v11 * wx) * wy;
        }
        p.y[m * p.y_pix + p.y_off + c] = __float2half(v);
    }
}
