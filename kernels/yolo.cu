// YOLO post-processing on the GPU: decode of an anchor-free head (YOLOv8: [4 + classes, anchors],
// boxes as cx, cy, w, h) into a compact list over a score threshold, then class-wise NMS, so
// only the final detections go back to the host.
#include "common.cuh"

// Detection record: x1, y1, x2, y2, score, class (6 floats).
extern "C" __global__ void yolo_decode_v8(const half *out, long long c_stride, long long a_stride,
                                          int anchors, int classes, float threshold,
                                          float *dets, int *count, int max_det) {
    for (int a = blockIdx.x * blockDim.x + threadIdx.x; a < anchors; a += gridDim.x * blockDim.x) {
        const half *col = out + (long long)a * a_stride;
        float best = -1.f;
        int cls = 0;
        for (int c = 0; c < classes; ++c) {
            const float s = __half2float(col[(4 + c) * c_stride]);
            if (s > best) { best = s; cls = c; }
        }
        if (best < threshold) continue;
        const int slot = atomicAdd(count, 1);
        if (slot >= max_det) continue;
        const float cx = __half2float(col[0]), cy = __half2float(col[c_stride]);
        const float w = __half2float(col[2 * c_stride]), h = __half2float(col[3 * c_stride]);
        float *d = dets + slot * 6;
        d[0] = cx - w / 2; d[1] = cy - h / 2; d[2] = cx + w / 2; d[3] = cy + h / 2;
        d[4] = best; d[5] = (float)cls;
    }
}

__device__ __forceinline__ float box_iou(const float *a, const float *b) {
    const float ix = fmaxf(0.f, fminf(a[2], b[2]) - fmaxf(a[0], b[0]));
    const float iy = fmaxf(0.f, fminf(a[3], b[3]) - fmaxf(a[1], b[1]));
    const float inter = ix * iy;
    const float area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    return area > 0.f ? inter / area : 0.f;
}

// keep[i] = 0 when a higher-scored box of the same class (ties: the lower index) overlaps it.
extern "C" __global__ void nms_mask(const float *dets, const int *count, int max_det, float iou,
                                    int *keep) {
    const int n = min(*count, max_det);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const float *di = dets + i * 6;
        int k = 1;
        for (int j = 0; j < n && k; ++j) {
            const float *dj = dets + j * 6;
            const bool before = dj[4] > di[4] || (dj[4] == di[4] && j < i);
            if (j != i && before && dj[5] == di[5] && box_iou(di, dj) > iou) k = 0;
        }
        keep[i] = k;
    }
}
