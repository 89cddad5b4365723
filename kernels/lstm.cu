// ONNX LSTM recurrence (gates i, o, f, c; activations Sigmoid, Tanh, Tanh), FP16 in and out,
// FP32 state and accumulation. The input projection X W^T + Wb + Rb of every step is one GEMM
// launch before this one (cuda/lower_recurrent.py); this kernel loops over time inside itself:
// one CTA per (batch entry, direction), thread u owns hidden unit u: its four gate sums, its
// cell state c (a register) and its h (shared memory, double-buffered: one sync a step).
// Gates are interleaved per unit ([unit][4 gates], 8 bytes), so at every k consecutive threads
// read consecutive 8-byte words of R.
#include "common.cuh"

#define LSTM_MAX_HIDDEN 1024

struct LstmParams {
    const half *xw;     // [rows][dirs][H][4]: projected input and both biases, row t*x_t+b*x_b
    const half *r;      // [dirs][H (k)][H (unit)][4]: R[d][g * H + unit][k]
    const half *h0;     // initial h at d * s_d + b * s_b + unit, may be null (zeros)
    const half *c0;     // initial c, same strides, may be null
    const int *lens;    // sequence length per batch entry, may be null (all seq)
    half *y;            // Y at t * y_t + d * y_d + b * y_b + unit, may be null
    half *y_h;          // last h, strides of h0, may be null
    half *y_c;          // last c, may be null
    int seq, dirs, H;
    int reverse;        // direction 0 runs backwards (direction='reverse'); 1 always does
    long long x_t, x_b;
    long long y_t, y_d, y_b;
    long long s_d, s_b;
};

// Four gate values packed as halves in 8 bytes -> floats.
__device__ __forceinline__ void lstm_unpack(uint2 v, float g[4]) {
    const float2 lo = __half22float2(*reinterpret_cast<const half2 *>(&v.x));
    const float2 hi = __half22float2(*reinterpret_cast<const half2 *>(&v.y));
    g[0] = lo.x;
    g[1] = lo.y;
    g[2] = hi.x;
    g[3] = hi.y;
}

// The four gate sums of ``unit`` at one step: projected input plus R h over k.
__device__ __forceinline__ void lstm_gates(const uint2 *r, const float *h, int H, uint2 x,
                                           float acc[4]) {
    lstm_unpack(x, acc);
#pragma unroll 4
    for (int k = 0; k < H; ++k) {
        float w[4];
        lstm_unpack(r[(long long)k * H], w);
        const float hk = h[k];
        for (int g = 0; g < 4; ++g) acc[g] = fmaf(w[g], hk, acc[g]);
    }
}

extern "C" __global__ void __launch_bounds__(LSTM_MAX_HIDDEN) lstm_recurrent(LstmParams p) {
    __shared__ float h[2][LSTM_MAX_HIDDEN];
    const int b = blockIdx.x, d = blockIdx.y, unit = threadIdx.x, H = p.H;
    const bool active = unit < H;
    const bool backwards = d == 1 || p.reverse;
    const long long state = d * p.s_d + b * p.s_b + unit;
    const int len = p.lens ? p.lens[b] : p.seq;
    const uint2 *r = reinterpret_cast<const uint2 *>(p.r) + (long long)d * H * H + unit;
    const uint2 *xw = reinterpret_cast<const uint2 *>(p.xw);
    float c = 0.f;
    if (active) {
        h[0][unit] = p.h0 ? __half2float(p.h0[state]) : 0.f;
        c = p.c0 ? __half2float(p.c0[state]) : 0.f;
    }
    __syncthreads();
    int cur = 0;
    for (int step = 0; step < len; ++step) {
        const int t = backwards ? len - 1 - step : step;
        if (active) {
            const long long row = t * p.x_t + b * p.x_b;
            float acc[4];
            lstm_gates(r, h[cur], H, xw[(row * p.dirs + d) * H + unit], acc);
            const float i = tx2_sigmoid(acc[0]), o = tx2_sigmoid(acc[1]);
            const float f = tx2_sigmoid(acc[2]), g = tanhf(acc[3]);
            c = f * c + i * g;
            const float hv = o * tanhf(c);
            h[cur ^ 1][unit] = hv;
            if (p.y) p.y[t * p.y_t + d * p.y_d + b * p.y_b + unit] = __float2half(hv);
        }
        cur ^= 1;
        __syncthreads();  // every read of h[cur ^ 1] is done before the next step writes it
    }
    if (!active) return;
    for (int t = len; t < p.seq && p.y; ++t)  // past the sequence's length Y is zero
        p.y[t * p.y_t + d * p.y_d + b * p.y_b + unit] = __float2half(0.f);
    if (p.y_h) p.y_h[state] = __float2half(h[cur][unit]);
    if (p.y_c) p.y_c[state] = __float2half(c);
}
