// The graph input/output conversions every CUDA build launches, in a file of their own so that
// a build compiles them without the elementwise op kernels (moved from elementwise.cu).
#include "common.cuh"

// The backend's graph inputs and outputs: FP32 in the caller's layout (NCHW) <-> FP16 in the
// arena (NHWC images; C = 1 for anything else: a plain conversion). n elements, C channels,
// HW pixels per image; i walks the destination.
extern "C" __global__ void to_arena_f16(const float *x, half *y, long long n, long long HW,
                                        int C) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long t = i / C, hw = t % HW;
        y[i] = __float2half(x[((t / HW) * C + (i - t * C)) * HW + hw]);
    }
}

extern "C" __global__ void from_arena_f32(const half *x, float *y, long long n, long long HW,
                                          int C) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long t = i / HW, hw = i - t * HW;
        y[i] = __half2float(x[((t / C) * HW + hw) * C + (t % C)]);
    }
}

// The same for int32 index values (tx2_infer_core/cuda/int32_values.py): FP32 holds integers
// exactly up to 2^24; a fed value is truncated toward zero, as a Cast.
extern "C" __global__ void to_arena_i32(const float *x, int *y, long long n, long long HW,
                                        int C) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long t = i / C, hw = t % HW;
        y[i] = (int)x[((t / HW) * C + (i - t * C)) * HW + hw];
    }
}

extern "C" __global__ void from_arena_i32(const int *x, float *y, long long n, long long HW,
                                          int C) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const long long t = i / HW, hw = i - t * HW;
        y[i] = (float)x[((t / C) * HW + hw) * C + (t % C)];
    }
}
