// Camera frame to network input in one kernel: uint8 HWC BGR -> letterbox (or stretch) bilinear
// resize as cv2.INTER_LINEAR does it (half-pixel centres, edge clamp, rounded to 0..255) ->
// channel order -> (v * mul + add) -> FP16 in the arena, NHWC or NCHW (strides say which).
#include "common.cuh"

struct PreParams {
    const unsigned char *src;
    int src_h, src_w, src_pitch;  // bytes per source row
    half *y;
    long long y_pix, y_chan, y_off;  // element strides of a pixel and a channel; offset
    int out_h, out_w;
    int top, left, new_h, new_w;  // the resized image inside the letterbox
    int swap_rb;                  // 1: source BGR, network RGB
    float pad;                    // pad value in source units (114 for YOLO)
    float mul[3], add[3];         // per network channel: v * mul + add
};

__device__ __forceinline__ void bilinear_rgb(const PreParams &p, int ry, int rx, float v[3]) {
    const float sy = (ry + 0.5f) * ((float)p.src_h / p.new_h) - 0.5f;
    const float sx = (rx + 0.5f) * ((float)p.src_w / p.new_w) - 0.5f;
    const float fy = fminf(fmaxf(sy, 0.f), (float)(p.src_h - 1));
    const float fx = fminf(fmaxf(sx, 0.f), (float)(p.src_w - 1));
    const int y0 = (int)fy, x0 = (int)fx;
    const int y1 = min(y0 + 1, p.src_h - 1), x1 = min(x0 + 1, p.src_w - 1);
    const float wy = fy - y0, wx = fx - x0;
    const unsigned char *r0 = p.src + (long long)y0 * p.src_pitch;
    const unsigned char *r1 = p.src + (long long)y1 * p.src_pitch;
    for (int c = 0; c < 3; ++c) {
        const float top = r0[x0 * 3 + c] * (1.f - wx) + r0[x1 * 3 + c] * wx;
        const float bot = r1[x0 * 3 + c] * (1.f - wx) + r1[x1 * 3 + c] * wx;
        v[c] = rintf(top * (1.f - wy) + bot * wy);  // cv2 rounds to uint8
    }
}

extern "C" __global__ void preprocess_letterbox(PreParams p) {
    const long long total = (long long)p.out_h * p.out_w;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int oy = (int)(idx / p.out_w), ox = (int)(idx % p.out_w);
        const int ry = oy - p.top, rx = ox - p.left;
        float v[3] = {p.pad, p.pad, p.pad};
        if (ry >= 0 && ry < p.new_h && rx >= 0 && rx < p.new_w) bilinear_rgb(p, ry, rx, v);
        half *out = p.y + p.y_off + idx * p.y_pix;
        for (int c = 0; c < 3; ++c) {
            const float s = v[p.swap_rb ? 2 - c : c];
            out[c * p.y_chan] = __float2half(s * p.mul[c] + p.add[c]);
        }
    }
}
