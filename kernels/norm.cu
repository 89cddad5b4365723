// Normalisations over the rows of a RowWalk (rows.cuh; tx2_infer_core/cuda/lower_norm.py),
// FP32 maths on FP16 data:
//   NORM_MEANVAR (InstanceNormalization, GroupNormalization, MeanVarianceNormalization):
//     (x - mean) / sqrt(var + eps) * gamma + beta, var the mean of the centred squares;
//   NORM_RMS (RMSNormalization): x / sqrt(mean(x^2) + eps) * gamma;
//   NORM_L1, NORM_L2 (LpNormalization): x / (sum |x| or sqrt(sum x^2)), 0 where that is 0.
// gamma and beta (FP32; null: none) are read at the row and element indices with their own
// strides gr1, gr2, gr3, gj1, gj2 (per channel, or per element of the normalised axes).
// LRN: the sum of squares over a window of channels, one thread per output element.
#include "rows.cuh"

#define NORM_MEANVAR 0
#define NORM_RMS 1
#define NORM_L1 2
#define NORM_L2 3

__device__ __forceinline__ float norm_term(int mode, float v) {
    return mode == NORM_MEANVAR ? v : mode == NORM_L1 ? fabsf(v) : v * v;
}

extern "C" __global__ void norm_rows(const half *x, half *y, const float *gamma,
                                     const float *beta, RowWalk w, long long gr1, long long gr2,
                                     long long gr3, long long gj1, long long gj2, int mode,
                                     float eps) {
    __shared__ float shared[TX2_TEAM_MAX / 32];
    for (long long first = (long long)blockIdx.x * blockDim.y; first < w.rows;
         first += (long long)gridDim.x * blockDim.y) {
        const long long r = first + threadIdx.y;
        const bool ok = r < w.rows;
        const int start = ok ? (int)threadIdx.x : w.n;  // a missing row reads nothing
        const half *xr = x + (ok ? tx2_row(w, r, w.xr1, w.xr2, w.xr3) : 0);
        float s = 0.f;
        for (int j = start; j < w.n; j += blockDim.x)
            s += norm_term(mode, __half2float(xr[tx2_elem(w, j, w.xj1, w.xj2)]));
        s = tx2_team_sum(s, shared);
        float shift = 0.f, div;
        if (mode == NORM_MEANVAR) {
            shift = s / w.n;
            float q = 0.f;
            for (int j = start; j < w.n; j += blockDim.x) {
                const float d = __half2float(xr[tx2_elem(w, j, w.xj1, w.xj2)]) - shift;
                q += d * d;
            }
            div = sqrtf(tx2_team_sum(q, shared) / w.n + eps);
        } else if (mode == NORM_RMS) {
            div = sqrtf(s / w.n + eps);
        } else {
            div = mode == NORM_L2 ? sqrtf(s) : s;
        }
        if (!ok) continue;
        half *yr = y + tx2_row(w, r, w.yr1, w.yr2, w.yr3);
        const long long gr = tx2_row(w, r, gr1, gr2, gr3);
        for (int j = start; j < w.n; j += blockDim.x) {
            const float v = __half2float(xr[tx2_elem(w, j, w.xj1, w.xj2)]);
            float out = (mode >= NORM_L1 && div == 0.f) ? 0.f : (v - shift) / div;
            const long long g = gr + tx2_elem(w, j, gj1, gj2);
            if (gamma) out *= gamma[g];
            if (beta) out += beta[g];
            yr[tx2_elem(w, j, w.yj1, w.yj2)] = __float2half(out);
        }
    }
}

// LRN across channels: y = x / (bias + alpha / size * sum of x^2 over the channels
// [c - (size - 1) / 2, c + size / 2])^beta. Rows are (image, pixel), elements the channels
// (strides xj2, yj2; j2 == n); channels are innermost in the walk.
extern "C" __global__ void lrn(const half *x, half *y, RowWalk w, int size, float alpha,
                               float beta, float bias) {
    const long long total = w.rows * w.n;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int c = (int)(i % w.n);
        const long long r = i / w.n;
        const half *xr = x + tx2_row(w, r, w.xr1, w.xr2, w.xr3);
        const int lo = max(c - (size - 1) / 2, 0), hi = min(c + size / 2, w.n - 1);
        float sq = 0.f;
        for (int k = lo; k <= hi; ++k) {
            const float v = __half2float(xr[k * w.xj2]);
            sq += v * v;
        }
        const float v = __half2float(xr[c * w.xj2]);
        y[tx2_row(w, r, w.yr1, w.yr2, w.yr3) + c * w.yj2] =
            __float2half(v / powf(bias + alpha / size * sq, beta));
    }
}
