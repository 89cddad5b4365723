// Batched matrix product of two activations (attention's Q*K^T, P*V), FP16 in and out,
// FP32 accumulation, any strides: Y[b] = act(alpha * A[b] @ B[b] + bias) * post_scale
// + post_shift (ActParams').
// Products with a constant operand run as a 1x1 convolution (conv.cu) instead, which has the
// tensor-core path.
#include "common.cuh"

struct GemmParams {
    const half *a;
    const half *b;
    const float *bias;  // per output column, may be null
    half *y;
    int M, N, K;
    int B1, B2;               // batch dims (Y is [B1, B2, M, N], contiguous)
    long long a_b1, a_b2, a_m, a_k;  // element strides (0 broadcasts)
    long long b_b1, b_b2, b_k, b_n;
    float alpha;
    ActParams act;
};

#define G_BM 64
#define G_BN 64
#define G_BK 16

extern "C" __global__ void __launch_bounds__(256) matmul(GemmParams p) {
    __shared__ float As[G_BK][G_BM + 4];
    __shared__ float Bs[G_BK][G_BN + 4];
    const int bz = blockIdx.z, i1 = bz / p.B2, i2 = bz % p.B2, tid = threadIdx.x;
    const half *a = p.a + i1 * p.a_b1 + i2 * p.a_b2;
    const half *b = p.b + i1 * p.b_b1 + i2 * p.b_b2;
    const int m0 = blockIdx.x * G_BM, n0 = blockIdx.y * G_BN;
    const int tx = tid & 15, ty = tid >> 4;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < p.K; k0 += G_BK) {
        __syncthreads();
        for (int e = tid; e < G_BK * G_BM; e += 256) {
            const int kk = e % G_BK, mm = e / G_BK, m = m0 + mm, k = k0 + kk;
            As[kk][mm] = (m < p.M && k < p.K) ? __half2float(a[m * p.a_m + k * p.a_k]) : 0.f;
        }
        for (int e = tid; e < G_BK * G_BN; e += 256) {
            const int nn = e % G_BN, kk = e / G_BN, n = n0 + nn, k = k0 + kk;
            Bs[kk][nn] = (n < p.N && k < p.K) ? __half2float(b[k * p.b_k + n * p.b_n]) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < G_BK; ++kk) {
            float av[4], bv[4];
            for (int i = 0; i < 4; ++i) av[i] = As[kk][ty * 4 + i];
            for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx * 4 + j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
    }
    half *y = p.y + (long long)bz * p.M * p.N;
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + ty * 4 + i;
        for (int j = 0; j < 4; ++j) {
            const int n = n0 + tx * 4 + j;
            if (m >= p.M || n >= p.N) continue;
            float v = p.alpha * acc[i][j] + (p.bias ? p.bias[n] : 0.f);
            v = tx2_act_post(tx2_act(v, p.act), p.act);
            y[(long long)m * p.N + n] = __float2half(v);
        }
    }
}
