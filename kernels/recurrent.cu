// ONNX RNN and GRU recurrences, FP16 in and out, FP32 state and accumulation, as lstm.cu's
// LSTM: the input projection X W^T + biases of every step is one GEMM launch before this one
// (cuda/lower_recurrent.py); these kernels loop over time inside themselves: one CTA per
// (batch entry, direction), thread u owns hidden unit u: its gate sums and its h (shared
// memory, double-buffered). R is stored [k][gate][unit], so at every k consecutive threads
// read consecutive halves.
#include "common.cuh"

#define REC_MAX_HIDDEN 1024

struct RecurrentParams {
    const half *xw;     // [rows][dirs][gates][H]: the projected input, row t*x_t+b*x_b
    const half *r;      // [dirs][H (k)][gates][H (unit)]: R[d][g * H + unit][k]
    const float *rb;    // GRU, linear_before_reset: Rb of gate h, [dirs][H]; may be null
    const half *h0;     // initial h at d * s_d + b * s_b + unit, may be null (zeros)
    const int *lens;    // sequence length per batch entry, may be null (all seq)
    half *y;            // Y at t * y_t + d * y_d + b * y_b + unit, may be null
    half *y_h;          // last h, strides of h0, may be null
    int seq, dirs, H;
    int reverse;        // direction 0 runs backwards (direction='reverse'); 1 always does
    int lbr;            // GRU: linear_before_reset
    int act[2];         // RNN: the activation of each direction (ACT_TANH, _RELU, _SIGMOID)
    long long x_t, x_b;
    long long y_t, y_d, y_b;
    long long s_d, s_b;
};

// acc[g] += sum over k of r[k * k_stride + g * H] * h[k], for the first N gates (r points at
// this thread's unit in its direction's R).
template <int N>
__device__ __forceinline__ void rec_dot(const half *r, long long k_stride, int H,
                                        const float *h, float acc[N]) {
#pragma unroll 4
    for (int k = 0; k < H; ++k) {
        const float hk = h[k];
        for (int g = 0; g < N; ++g)
            acc[g] = fmaf(__half2float(r[k * k_stride + (long long)g * H]), hk, acc[g]);
    }
}

// The RNN activation of code ``act`` (the codes of common.cuh).
__device__ __forceinline__ float rnn_act(float v, int act) {
    switch (act) {
    case ACT_RELU: return fmaxf(v, 0.f);
    case ACT_SIGMOID: return tx2_sigmoid(v);
    default: return tanhf(v);  // ACT_TANH
    }
}

// Step ``step`` of a sequence of ``len`` runs at time t (backwards for direction 1 or
// 'reverse').
__device__ __forceinline__ int rec_time(const RecurrentParams &p, int d, int len, int step) {
    return d == 1 || p.reverse ? len - 1 - step : step;
}

// The projected input of gate 0 of ``unit`` at time t.
__device__ __forceinline__ const half *rec_xw(const RecurrentParams &p, int t, int b, int d,
                                              int gates, int unit) {
    const long long row = t * p.x_t + b * p.x_b;
    return p.xw + ((row * p.dirs + d) * gates) * p.H + unit;
}

__device__ __forceinline__ void rec_store_y(const RecurrentParams &p, int t, int d, int b,
                                            int unit, float v) {
    if (p.y) p.y[t * p.y_t + d * p.y_d + b * p.y_b + unit] = __float2half(v);
}

// Past the sequence's length Y is zero; Y_h is the last h.
__device__ __forceinline__ void rec_finish(const RecurrentParams &p, int b, int d, int unit,
                                           int len, float h) {
    for (int t = len; t < p.seq; ++t) rec_store_y(p, t, d, b, unit, 0.f);
    if (p.y_h) p.y_h[d * p.s_d + b * p.s_b + unit] = __float2half(h);
}

// h[unit] = initial h (zero without one), visible to the whole CTA; returns the length.
__device__ __forceinline__ int rec_start(const RecurrentParams &p, int b, int d, int unit,
                                         float *h) {
    if (unit < p.H) h[unit] = p.h0 ? __half2float(p.h0[d * p.s_d + b * p.s_b + unit]) : 0.f;
    __syncthreads();
    return p.lens ? p.lens[b] : p.seq;
}

// RNN: h = f(xw + R h).
extern "C" __global__ void __launch_bounds__(REC_MAX_HIDDEN) rnn_recurrent(RecurrentParams p) {
    __shared__ float h[2][REC_MAX_HIDDEN];
    const int b = blockIdx.x, d = blockIdx.y, unit = threadIdx.x, H = p.H;
    const bool active = unit < H;
    const half *r = p.r + (long long)d * H * H + unit;
    const int act = d ? p.act[1] : p.act[0];
    const int len = rec_start(p, b, d, unit, h[0]);
    int cur = 0;
    for (int step = 0; step < len; ++step) {
        const int t = rec_time(p, d, len, step);
        if (active) {
            float acc = __half2float(*rec_xw(p, t, b, d, 1, unit));
            rec_dot<1>(r, H, H, h[cur], &acc);
            const float hv = rnn_act(acc, act);
            h[cur ^ 1][unit] = hv;
            rec_store_y(p, t, d, b, unit, hv);
        }
        cur ^= 1;
        __syncthreads();  // every read of h[cur ^ 1] is done before the next step writes it
    }
    if (active) rec_finish(p, b, d, unit, len, h[cur][unit]);
}

// GRU, gates z, r, h: z = sigmoid(xw_z + R_z h), r = sigmoid(xw_r + R_r h),
// n = tanh(xw_h + r * (R_h h + Rb_h)) (linear_before_reset) or tanh(xw_h + R_h (r * h))
// (then Rb_h is in xw_h, and r * h of every unit is needed first: a second sync a step),
// h = (1 - z) * n + z * h.
extern "C" __global__ void __launch_bounds__(REC_MAX_HIDDEN) gru_recurrent(RecurrentParams p) {
    __shared__ float h[2][REC_MAX_HIDDEN];
    __shared__ float reset_h[REC_MAX_HIDDEN];  // r * h (linear_before_reset 0)
    const int b = blockIdx.x, d = blockIdx.y, unit = threadIdx.x, H = p.H;
    const bool active = unit < H;
    const half *r = p.r + (long long)d * H * 3 * H + unit;
    const float rb_h = active && p.rb ? p.rb[d * H + unit] : 0.f;
    const int len = rec_start(p, b, d, unit, h[0]);
    int cur = 0;
    for (int step = 0; step < len; ++step) {
        const int t = rec_time(p, d, len, step);
        float acc[3] = {0.f, 0.f, 0.f}, z = 0.f, n = 0.f, x_h = 0.f;
        if (active) {
            const half *xw = rec_xw(p, t, b, d, 3, unit);
            acc[0] = __half2float(xw[0]);
            acc[1] = __half2float(xw[H]);
            x_h = __half2float(xw[2 * H]);
            if (p.lbr) {
                rec_dot<3>(r, 3 * H, H, h[cur], acc);
            } else {
                rec_dot<2>(r, 3 * H, H, h[cur], acc);
            }
            z = tx2_sigmoid(acc[0]);
            const float reset = tx2_sigmoid(acc[1]);
            if (p.lbr) n = tanhf(x_h + reset * (acc[2] + rb_h));
            else reset_h[unit] = reset * h[cur][unit];
        }
        if (!p.lbr) {
            __syncthreads();  // every unit's r * h is written
            if (active) {
                rec_dot<1>(r + 2 * H, 3 * H, H, reset_h, &x_h);
                n = tanhf(x_h);
            }
        }
        if (active) {
            const float hv = (1.f - z) * n + z * h[cur][unit];
            h[cur ^ 1][unit] = hv;
            rec_store_y(p, t, d, b, unit, hv);
        }
        cur ^= 1;
        __syncthreads();  // h[cur ^ 1] and reset_h are read before the next step writes them
    }
    if (active) rec_finish(p, b, d, unit, len, h[cur][unit]);
}
