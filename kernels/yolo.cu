// YOLO post-processing on the GPU, as tx2_infer_core/heads.py does it on the host: decode of the
// raw head into candidates over the score threshold (single best class per anchor), then one
// block sorts them by score and runs greedy class-aware NMS, and writes the final detections
// mapped back to original-image pixels. Only that short list goes back to the host.
#include "common.cuh"

#define TX2_MAX_CLASSES 1024
#define TX2_MAX_CAND 4096   // candidates kept (a power of two: the sort's size)
#define TX2_MAX_ANCHORS 9
#define TX2_NMS_THREADS 1024

// Per-frame settings, uploaded with the frame; the upload also resets ``count``.
struct PostParams {
    float conf, iou;
    int max_det;
    int count;  // candidates found (atomic), may exceed TX2_MAX_CAND
    unsigned char allow[TX2_MAX_CLASSES];  // 1: the class is considered
};

struct Cand {
    float box[4];  // x1, y1, x2, y2 in network-input pixels
    float score;
    int cls;
    int row;  // the candidate's row in heads.py order (ties in score: lower row first)
    int pad;
};

__device__ __forceinline__ void push_cand(PostParams *post, Cand *cand, float cx, float cy,
                                          float w, float h, float score, int cls, int row) {
    const int slot = atomicAdd(&post->count, 1);
    if (slot >= TX2_MAX_CAND) return;
    Cand &c = cand[slot];
    c.box[0] = cx - w / 2; c.box[1] = cy - h / 2; c.box[2] = cx + w / 2; c.box[3] = cy + h / 2;
    c.score = score; c.cls = cls; c.row = row;
}

// YOLOv8 ([4 + C] rows) and YOLOv5 ([5 + C] rows, score = objectness * class) heads.
struct RowsParams {
    const half *out;
    long long c_stride, a_stride;
    int anchors, classes, has_obj;
    PostParams *post;
    Cand *cand;
};

extern "C" __global__ void yolo_decode_rows(RowsParams p) {
    const PostParams *post = p.post;
    const int first = 4 + p.has_obj;
    for (int a = blockIdx.x * blockDim.x + threadIdx.x; a < p.anchors;
         a += gridDim.x * blockDim.x) {
        const half *col = p.out + (long long)a * p.a_stride;
        const float obj = p.has_obj ? __half2float(col[4 * p.c_stride]) : 1.f;
        float best = -1.f;
        int cls = 0;
        for (int c = 0; c < p.classes; ++c) {
            if (c >= TX2_MAX_CLASSES || !post->allow[c]) continue;
            const float s = obj * __half2float(col[(first + c) * p.c_stride]);
            if (s > best) { best = s; cls = c; }
        }
        if (best < post->conf) continue;
        push_cand(p.post, p.cand, __half2float(col[0]), __half2float(col[p.c_stride]),
                  __half2float(col[2 * p.c_stride]), __half2float(col[3 * p.c_stride]),
                  best, cls, a);
    }
}

// One Darknet [yolo] layer: raw map [1, na * (5 + C), H, W]; rows run over (y, x, anchor).
struct DarknetParams {
    const half *out;
    long long c_stride, y_stride, x_stride;
    int H, W, na, classes, row_base;
    float stride_x, stride_y, scale_x_y;
    float anchors[2 * TX2_MAX_ANCHORS];
    PostParams *post;
    Cand *cand;
};

extern "C" __global__ void yolo_decode_darknet(DarknetParams p) {
    const PostParams *post = p.post;
    const int total = p.H * p.W * p.na;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const int a = i % p.na, x = (i / p.na) % p.W, y = i / (p.na * p.W);
        const half *v = p.out + (long long)a * (5 + p.classes) * p.c_stride
                        + y * p.y_stride + x * p.x_stride;
        const float obj = tx2_sigmoid(__half2float(v[4 * p.c_stride]));
        if (obj < post->conf) continue;  // score = obj * prob <= obj
        float best = -TX2_INF;
        int cls = 0;
        for (int c = 0; c < p.classes; ++c) {
            if (c >= TX2_MAX_CLASSES || !post->allow[c]) continue;
            const float raw = __half2float(v[(5 + c) * p.c_stride]);
            if (raw > best) { best = raw; cls = c; }
        }
        const float score = obj * tx2_sigmoid(best);
        if (score < post->conf) continue;
        const float off = (p.scale_x_y - 1.f) / 2;
        const float cx = (tx2_sigmoid(__half2float(v[0])) * p.scale_x_y - off + x) * p.stride_x;
        const float cy = (tx2_sigmoid(__half2float(v[p.c_stride])) * p.scale_x_y - off + y)
                         * p.stride_y;
        const float w = __expf(__half2float(v[2 * p.c_stride])) * p.anchors[2 * a];
        const float h = __expf(__half2float(v[3 * p.c_stride])) * p.anchors[2 * a + 1];
        push_cand(p.post, p.cand, cx, cy, w, h, score, cls, p.row_base + i);
    }
}

__device__ __forceinline__ float box_iou(const float *a, const float *b) {
    const float ix = fmaxf(0.f, fminf(a[2], b[2]) - fmaxf(a[0], b[0]));
    const float iy = fmaxf(0.f, fminf(a[3], b[3]) - fmaxf(a[1], b[1]));
    const float inter = ix * iy;
    const float area_a = fmaxf(a[2] - a[0], 0.f) * fmaxf(a[3] - a[1], 0.f);
    const float area_b = fmaxf(b[2] - b[0], 0.f) * fmaxf(b[3] - b[1], 0.f);
    const float uni = area_a + area_b - inter;
    return uni > 0.f ? inter / uni : 0.f;
}

struct NmsParams {
    const Cand *cand;
    const PostParams *post;
    float *out;  // [0]: detections kept, [1]: candidates found, then 6 floats per detection
    float pad_x, pad_y, scale_x, scale_y, src_w, src_h;
};

// Sort key: score bits (scores are >= 0, so their bits order like them), then lower row first.
__device__ __forceinline__ unsigned long long cand_key(const Cand &c) {
    return ((unsigned long long)__float_as_uint(c.score) << 32) | (0xffffffffu - (unsigned)c.row);
}

__device__ void sort_desc(unsigned long long *key, unsigned short *idx, int size) {
    for (int k = 2; k <= size; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < size; i += blockDim.x) {
                const int ixj = i ^ j;
                if (ixj > i && ((key[i] < key[ixj]) == ((i & k) == 0))) {
                    const unsigned long long tk = key[i]; key[i] = key[ixj]; key[ixj] = tk;
                    const unsigned short ti = idx[i]; idx[i] = idx[ixj]; idx[ixj] = ti;
                }
            }
            __syncthreads();
        }
    }
}

__device__ void write_det(const NmsParams &p, const Cand &c, int slot) {
    float *d = p.out + 2 + slot * 6;
    d[0] = fminf(fmaxf((c.box[0] - p.pad_x) / p.scale_x, 0.f), p.src_w);
    d[1] = fminf(fmaxf((c.box[1] - p.pad_y) / p.scale_y, 0.f), p.src_h);
    d[2] = fminf(fmaxf((c.box[2] - p.pad_x) / p.scale_x, 0.f), p.src_w);
    d[3] = fminf(fmaxf((c.box[3] - p.pad_y) / p.scale_y, 0.f), p.src_h);
    d[4] = c.score;
    d[5] = (float)c.cls;
}

// One block of TX2_NMS_THREADS: sort, greedy NMS (as heads.py / nms.py), unletterbox, write.
extern "C" __global__ void __launch_bounds__(TX2_NMS_THREADS) nms_greedy(NmsParams p) {
    __shared__ unsigned long long key[TX2_MAX_CAND];
    __shared__ unsigned short idx[TX2_MAX_CAND];
    __shared__ unsigned char dead[TX2_MAX_CAND];
    __shared__ int kept;
    const int n = min(p.post->count, TX2_MAX_CAND), max_det = p.post->max_det;
    int size = 1;
    while (size < n) size <<= 1;
    for (int i = threadIdx.x; i < size; i += blockDim.x) {
        key[i] = i < n ? cand_key(p.cand[i]) : 0ull;
        idx[i] = (unsigned short)i;
        dead[i] = 0;
    }
    if (threadIdx.x == 0) kept = 0;
    __syncthreads();
    sort_desc(key, idx, size);
    for (int i = 0; i < n; ++i) {
        const int done = kept;
        const bool alive = !dead[i];
        __syncthreads();
        if (done >= max_det) break;
        if (!alive) continue;
        const Cand &ci = p.cand[idx[i]];
        for (int j = i + 1 + threadIdx.x; j < n; j += blockDim.x) {
            const Cand &cj = p.cand[idx[j]];
            if (!dead[j] && cj.cls == ci.cls && box_iou(ci.box, cj.box) > p.post->iou) dead[j] = 1;
        }
        if (threadIdx.x == 0) { write_det(p, ci, done); kept = done + 1; }
        __syncthreads();
    }
    if (threadIdx.x == 0) { p.out[0] = (float)kept; p.out[1] = (float)p.post->count; }
}
