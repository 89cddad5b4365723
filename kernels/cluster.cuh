// Split-K summed inside a thread-block cluster (sm_90): the S splits of an output tile are the
// S CTAs of a cluster along z. Each leaves its 32-bit accumulators (FP32 or int32) as a
// BM x (BN + 4) tile in its own shared memory; after a cluster barrier CTA r sums rows r,
// r + S, ... over the S tiles through distributed shared memory, in split order, and stores
// them; a second barrier keeps every tile alive until its readers are done.
#pragma once

// Shared bytes of a CTA whose k-loop pipeline takes ``pipe`` bytes: a cluster's split (S > 1)
// reuses them for its BM x (BN + 4) tile of 32-bit sums, so the larger of the two.
template <int BM, int BN, int S>
__host__ __device__ constexpr int tx2_cluster_smem(int pipe) {
    return S > 1 && BM * (BN + 4) * 4 > pipe ? BM * (BN + 4) * 4 : pipe;
}

// One warp's 32x32 accumulator fragments ``acc`` (mma.sync's m16n8 layout, rows wm..,
// columns wn..) into a shared tile of LD words a row: the cluster's split-K sum below and
// conv_mma.cu's staged epilogue read them there.
template <int LD, class T>
__device__ __forceinline__ void tx2_stage_fragments(T *tile, T (*acc)[4][4], int wm,
                                                    int wn, int lane) {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                T *dst = &tile[(wm + i * 16 + (lane >> 2) + h * 8) * LD + wn + j * 8 +
                               (lane & 3) * 2];
                dst[0] = acc[i][j][2 * h];
                dst[1] = acc[i][j][2 * h + 1];
            }
}

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
__device__ __forceinline__ void tx2_cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n"
                 "barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

__device__ __forceinline__ unsigned tx2_cluster_rank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}

// Two 32-bit words at ``ptr`` in the shared memory of the cluster's CTA ``rank``.
__device__ __forceinline__ uint2 tx2_cluster_load2(const void *ptr, unsigned rank) {
    unsigned remote;
    uint2 v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n"
                 : "=r"(remote) : "r"((unsigned)__cvta_generic_to_shared(ptr)), "r"(rank));
    asm volatile("ld.shared::cluster.v2.u32 {%0, %1}, [%2];\n"
                 : "=r"(v.x), "=r"(v.y) : "r"(remote) : "memory");
    return v;
}

__device__ __forceinline__ float tx2_from_bits(unsigned u, float) { return __uint_as_float(u); }
__device__ __forceinline__ int tx2_from_bits(unsigned u, int) { return (int)u; }

// The cluster's split-K sum of one warp's 32x32 fragments ``acc`` (mma.sync's m16n8 layout,
// at rows wm.., columns wn.. of the tile at m0, n0), then ``store(m, k, v, two)`` of each
// output pair. ``red`` is the CTA's shared memory (at least BM * (BN + 4) words).
template <int BM, int BN, int S, class T, class Store>
__device__ __forceinline__ void tx2_cluster_reduce(T *red, long long M, int Kg, long long m0,
                                                   int n0, int wm, int wn, T (*acc)[4][4],
                                                   int lane, Store store) {
    constexpr int LD = BN + 4, PAIRS = BN / 2, ROWS = (BM + S - 1) / S;
    tx2_stage_fragments<LD>(red, acc, wm, wn, lane);
    tx2_cluster_sync();  // every split's tile is in its shared memory
    const unsigned rank = tx2_cluster_rank();
    for (int idx = threadIdx.x; idx < ROWS * PAIRS; idx += blockDim.x) {
        const int row = (idx / PAIRS) * S + rank, col = (idx % PAIRS) * 2;
        const long long m = m0 + row;
        const int k = n0 + col;
        if (row >= BM || m >= M || k >= Kg) continue;
        T v[2] = {0, 0};
#pragma unroll
        for (int q = 0; q < S; ++q) {
            const uint2 t = tx2_cluster_load2(&red[row * LD + col], q);
            v[0] += tx2_from_bits(t.x, T());
            v[1] += tx2_from_bits(t.y, T());
        }
        store(m, k, v, k + 1 < Kg);
    }
    tx2_cluster_sync();  // no CTA leaves while another still reads its tile
}
#endif
