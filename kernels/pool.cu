// Pooling over NHWC FP16 views: max / average windows, and global reductions.
#include "common.cuh"

struct PoolParams {
    const half *x;
    half *y;
    int N, H, W, C, P, Q;
    int R, S, sh, sw, ph, pw, dh, dw;
    int x_pix, x_off, y_pix, y_off;
    int is_avg, count_include_pad;
};

extern "C" __global__ void pool2d(PoolParams p) {
    const long long total = (long long)p.N * p.P * p.Q * p.C;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(idx % p.C);
        const long long m = idx / p.C;
        int n, oh, ow;
        tx2_decode_pixel(m, p.P, p.Q, n, oh, ow);
        float acc = p.is_avg ? 0.f : -TX2_INF;
        int count = 0;
        for (int r = 0; r < p.R; ++r) {
            const int ih = oh * p.sh - p.ph + r * p.dh;
            for (int s = 0; s < p.S; ++s) {
                const int iw = ow * p.sw - p.pw + s * p.dw;
                const bool inside = ih >= 0 && ih < p.H && iw >= 0 && iw < p.W;
                // ONNX counts padded positions, but never beyond the padded input's end
                if (p.count_include_pad && ih < p.H + p.ph && iw < p.W + p.pw) ++count;
                if (!inside) continue;
                if (!p.count_include_pad) ++count;
                const float v = __half2float(
                    p.x[(((long long)n * p.H + ih) * p.W + iw) * p.x_pix + p.x_off + c]);
                acc = p.is_avg ? acc + v : fmaxf(acc, v);
            }
        }
        if (p.is_avg) acc = count ? acc / count : 0.f;
        p.y[m * p.y_pix + p.y_off + c] = __float2half(acc);
    }
}

// Global reductions over the pixels of N images of HW pixels, C channels (ReduceMean, ReduceSum,
// ReduceMax, ReduceMin of a run of axes as [outer N, reduced HW, inner C]; GlobalAveragePool):
// a block per (32 channels, image); its blockDim.y rows (at most GAP_MAX_ROWS) split the
// pixels, then one row combines the partial results. A warp reads 32 adjacent channels of one
// pixel (coalesced); many pixels are in flight per channel. FP32 accumulation.
#define GAP_MAX_ROWS 32
#define RED_MEAN 0
#define RED_SUM 1
#define RED_MAX 2
#define RED_MIN 3

// a combined with b under ``op`` (max and min keep a NaN, as numpy does)
__device__ __forceinline__ float tx2_reduce(int op, float a, float b) {
    if (op == RED_MAX) return (b > a || b != b) ? b : a;
    if (op == RED_MIN) return (b < a || b != b) ? b : a;
    return a + b;
}

extern "C" __global__ void global_reduce(const half *x, half *y, int N, int HW, int C, int x_pix,
                                         int x_off, int y_pix, int y_off, int op) {
    __shared__ float part[GAP_MAX_ROWS][33];
    const int c = blockIdx.x * 32 + threadIdx.x, n = blockIdx.y;
    const float start = op == RED_MAX ? -TX2_INF : op == RED_MIN ? TX2_INF : 0.f;
    float acc = start;
    if (c < C) {
        const half *xp = x + (long long)n * HW * x_pix + x_off + c;
        for (int i = threadIdx.y; i < HW; i += blockDim.y)
            acc = tx2_reduce(op, acc, __half2float(xp[(long long)i * x_pix]));
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float total = start;
        for (int r = 0; r < blockDim.y; ++r) total = tx2_reduce(op, total, part[r][threadIdx.x]);
        y[(long long)n * y_pix + y_off + c] = __float2half(op == RED_MEAN ? total / HW : total);
    }
}
