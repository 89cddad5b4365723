// Pooling over NHWC FP16 views: max / average windows, and global reductions.
#include "common.cuh"

struct PoolParams {
    const half *x;
    half *y;
    int N, H, W, C, P, Q;
    int R, S, sh, sw, ph, pw, dh, dw;
    int x_pix, x_off, y_pix, y_off;
    int is_avg, count_include_pad;
    int lp;  // LpPool's p (0: max or average): (sum of |x|^p over the window)^(1/p), zero pads
};

extern "C" __global__ void pool2d(PoolParams p) {
    const long long total = (long long)p.N * p.P * p.Q * p.C;
    for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(idx % p.C);
        const long long m = idx / p.C;
        int n, oh, ow;
        tx2_decode_pixel(m, p.P, p.Q, n, oh, ow);
        float acc = p.is_avg || p.lp ? 0.f : -TX2_INF;
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
                if (p.lp) acc += powf(fabsf(v), (float)p.lp);
                else acc = p.is_avg ? acc + v : fmaxf(acc, v);
            }
        }
        if (p.is_avg) acc = count ? acc / count : 0.f;
        if (p.lp) acc = powf(acc, 1.f / p.lp);
        p.y[m * p.y_pix + p.y_off + c] = __float2half(acc);
    }
}

// Global reductions over the pixels of N images of HW pixels, C channels (the ONNX Reduce ops of
// a run of axes as [outer N, reduced HW, inner C]; GlobalAveragePool, GlobalLpPool p=1, 2):
// a block per (32 channels, image, split of the pixels); its blockDim.y rows (at most
// GAP_MAX_ROWS) share the split's pixels, then every row combines the rows' results. A warp
// reads 32 adjacent channels of one pixel (coalesced), GAP_UNROLL pixels in flight per thread.
// FP32 accumulation. Each element adds a term (|x|, x^2, exp(x - peak)), the total makes the
// result (mean, sqrt, log); RED_LOGSUMEXP first finds each channel's peak (its maximum, 0 when
// not finite, as numpy), over the whole image: it is never split.
// Split (gridDim.z > 1): each block leaves its 32 FP32 totals in ``ws`` and takes a ticket of
// its (image, channel block); the last to arrive combines the splits' totals in split order
// (the same bits every run), writes the result and puts the ticket counter back to 0.
#define GAP_MAX_ROWS 32
#define GAP_THREADS 512       // at most: 32 channels x GAP_ROWS (lower_nn.py) pixel rows
#define GAP_BLOCKS_PER_SM 4   // resident blocks an SM is to hold (GAP_BLOCKS_PER_SM there)
#define GAP_UNROLL 8
#define RED_MEAN 0
#define RED_SUM 1
#define RED_MAX 2
#define RED_MIN 3
#define RED_PROD 4
#define RED_L1 5
#define RED_L2 6
#define RED_SUMSQUARE 7
#define RED_LOGSUM 8
#define RED_LOGSUMEXP 9

// a combined with b under ``op`` (max and min keep a NaN, as numpy does)
__device__ __forceinline__ float tx2_reduce(int op, float a, float b) {
    if (op == RED_MAX) return (b > a || b != b) ? b : a;
    if (op == RED_MIN) return (b < a || b != b) ? b : a;
    if (op == RED_PROD) return a * b;
    return a + b;
}

__device__ __forceinline__ float tx2_reduce_start(int op) {
    return op == RED_MAX ? -TX2_INF : op == RED_MIN ? TX2_INF : op == RED_PROD ? 1.f : 0.f;
}

// what element ``v`` adds under ``op``
__device__ __forceinline__ float tx2_reduce_term(int op, float v, float peak) {
    if (op == RED_L1) return fabsf(v);
    if (op == RED_L2 || op == RED_SUMSQUARE) return v * v;
    if (op == RED_LOGSUMEXP) return expf(v - peak);
    return v;
}

// the result of ``total``, the combined terms of ``count`` elements
__device__ __forceinline__ float tx2_reduce_result(int op, float total, int count, float peak) {
    if (op == RED_MEAN) return total / count;
    if (op == RED_L2) return sqrtf(total);
    if (op == RED_LOGSUM) return logf(total);
    if (op == RED_LOGSUMEXP) return logf(total) + peak;
    return total;
}

// The combined terms of channel ``threadIdx.x`` (``xp``: its first element; ``active``: it
// exists) over ``HW`` pixels, in every row of the block. A row takes pixels threadIdx.y,
// + blockDim.y, ... in that order, GAP_UNROLL loads at a time.
__device__ float tx2_block_reduce(int op, const half *xp, int HW, int x_pix, bool active,
                                  float peak, float (*part)[33]) {
    float acc = tx2_reduce_start(op);
    if (active) {
        const int step = blockDim.y;
        for (int i = threadIdx.y; i < HW; i += step * GAP_UNROLL) {
            float v[GAP_UNROLL];
#pragma unroll
            for (int u = 0; u < GAP_UNROLL; ++u) {
                const int k = i + u * step;
                v[u] = k < HW ? __half2float(xp[(long long)k * x_pix]) : 0.f;
            }
#pragma unroll
            for (int u = 0; u < GAP_UNROLL; ++u)
                if (i + u * step < HW) acc = tx2_reduce(op, acc, tx2_reduce_term(op, v[u], peak));
        }
    }
    __syncthreads();  // an earlier call's readers are done with ``part``
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    float total = tx2_reduce_start(op);
    for (int r = 0; r < blockDim.y; ++r) total = tx2_reduce(op, total, part[r][threadIdx.x]);
    return total;
}

// True in the block that arrives last of the ``count`` counted at ``ticket``, after leaving
// ``total`` (row 0's) as part ``part`` of ``parts`` ([part][32] floats).
__device__ bool tx2_arrive_last(float total, float *parts, int part, unsigned *ticket,
                                unsigned count) {
    __shared__ bool last;
    if (threadIdx.y == 0) parts[part * 32 + threadIdx.x] = total;
    __threadfence();  // the totals are seen by every block before the ticket is
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0) last = atomicAdd(ticket, 1u) == count - 1;
    __syncthreads();
    return last;
}

extern "C" __global__ void __launch_bounds__(GAP_THREADS, GAP_BLOCKS_PER_SM)
    global_reduce(const half *x, half *y, int N, int HW, int C, int x_pix, int x_off,
                  int y_pix, int y_off, int op, float *ws, unsigned *tickets) {
    __shared__ float part[GAP_MAX_ROWS][33];
    const int c = blockIdx.x * 32 + threadIdx.x, n = blockIdx.y;
    const int per = (HW + gridDim.z - 1) / gridDim.z, lo = min(HW, (int)blockIdx.z * per);
    const half *xp = x + ((long long)n * HW + lo) * x_pix + x_off + c;
    float peak = 0.f;
    if (op == RED_LOGSUMEXP) {
        peak = tx2_block_reduce(RED_MAX, xp, HW, x_pix, c < C, 0.f, part);
        if (!isfinite(peak)) peak = 0.f;
    }
    float total = tx2_block_reduce(op, xp, min(per, HW - lo), x_pix, c < C, peak, part);
    if (gridDim.z > 1) {
        const long long cell = (long long)n * gridDim.x + blockIdx.x;
        // the last split of the (image, channel block) cell: ws is [cell][split][32]
        if (!tx2_arrive_last(total, ws + cell * gridDim.z * 32, blockIdx.z, tickets + cell,
                             gridDim.z))
            return;
        // Row y sums splits y, y + rows, ... (a few loads each, not gridDim.z in a row), then
        // every row adds the rows' sums in row order: a fixed order, the same bits every run.
        float mine = tx2_reduce_start(op);
        for (int z = threadIdx.y; z < gridDim.z; z += blockDim.y)
            mine = tx2_reduce(op, mine, __ldcg(ws + (cell * gridDim.z + z) * 32 + threadIdx.x));
        __syncthreads();  // the block reduction's readers are done with ``part``
        part[threadIdx.y][threadIdx.x] = mine;
        __syncthreads();
        total = tx2_reduce_start(op);
        for (int r = 0; r < blockDim.y; ++r) total = tx2_reduce(op, total, part[r][threadIdx.x]);
        if (threadIdx.x == 0 && threadIdx.y == 0) tickets[cell] = 0;  // for the next launch
    }
    if (threadIdx.y == 0 && c < C)
        y[(long long)n * y_pix + y_off + c] = __float2half(tx2_reduce_result(op, total, HW, peak));
}

// Squeeze-and-excite in one launch (cuda/squeeze_excite.py): per image
//   s = act2(W2 act1(W1 mean(x) + b1) + b2)
// over global_reduce's grid (32 channels x a split of the pixels a block). Every block leaves
// its sums in ws; the image's last block (a ticket) adds them in split order, rounds the means
// and the hidden values to FP16 as the arena would between the three launches this replaces,
// and runs both products, a warp per output: w1 [C1][C], w2 [C][C1] FP16, FP32 biases (may be
// null). C <= SE_MAX_C, C1 <= SE_MAX_C1 (the host checks).
#define SE_MAX_C 2048
#define SE_MAX_C1 512

// ``out(r, act(w[r] . v + b[r]))`` for every row r of the FP16 matrix w [rows][len] (bias b
// may be null) and the shared vector v: a warp per row, its lanes along the row.
template <class Out>
__device__ __forceinline__ void se_product(const half *w, const float *b, const ActParams &act,
                                           int rows, int len, const float *v, Out out) {
    const int lane = threadIdx.x, warp = threadIdx.y, warps = blockDim.y;
    for (int r = warp; r < rows; r += warps) {
        const half *row = w + (long long)r * len;
        float acc = 0.f;
        for (int k = lane; k < len; k += 32) acc += __half2float(row[k]) * v[k];
        acc = tx2_warp_sum(acc) + (b ? b[r] : 0.f);
        if (lane == 0) out(r, tx2_act_epilogue(acc, act, nullptr, r));
    }
}

extern "C" __global__ void __launch_bounds__(GAP_THREADS, GAP_BLOCKS_PER_SM)
    squeeze_excite(const half *x, half *y, int N, int HW, int C, int x_pix, int x_off,
                   int y_pix, int y_off, int op, float *ws, unsigned *tickets,
                   const half *w1, const float *b1, const half *w2, const float *b2, int C1,
                   ActParams act1, ActParams act2) {
    __shared__ float part[GAP_MAX_ROWS][33];
    __shared__ float mean[SE_MAX_C];
    __shared__ float hid[SE_MAX_C1];
    const int c = blockIdx.x * 32 + threadIdx.x, n = blockIdx.y;
    const int per = (HW + gridDim.z - 1) / gridDim.z, lo = min(HW, (int)blockIdx.z * per);
    const half *xp = x + ((long long)n * HW + lo) * x_pix + x_off + c;
    const float total = tx2_block_reduce(op, xp, min(per, HW - lo), x_pix, c < C, 0.f, part);
    const int blocks = gridDim.x * gridDim.z;
    float *sums = ws + (long long)n * blocks * 32;  // [channel block][split][32]
    if (!tx2_arrive_last(total, sums, blockIdx.x * gridDim.z + blockIdx.z, tickets + n, blocks))
        return;  // the image's last block goes on
    const int tid = threadIdx.y * 32 + threadIdx.x, threads = 32 * blockDim.y;
    for (int ch = tid; ch < C; ch += threads) {
        float sum = 0.f;
        for (int z = 0; z < gridDim.z; ++z)
            sum += __ldcg(sums + ((ch / 32) * gridDim.z + z) * 32 + ch % 32);
        mean[ch] = __half2float(__float2half(tx2_reduce_result(op, sum, HW, 0.f)));
    }
    __syncthreads();
    se_product(w1, b1, act1, C1, C, mean, [&](int j, float v) {
        hid[j] = __half2float(__float2half(v));
    });
    __syncthreads();
    se_product(w2, b2, act2, C, C1, hid, [&](int k, float v) {
        y[(long long)n * y_pix + y_off + k] = __float2half(v);
    });
    if (tid == 0) tickets[n] = 0;  // for the next launch
}
