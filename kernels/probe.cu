// Probes of where and how fast kernels run (cuda/green.py, bench/bench_tx2_slice.py): the SM
// each CTA ran on, and the SM clock measured against the GPU's nanosecond timer.

// out[blockIdx.x] = the SM the CTA ran on (%smid). Each CTA first stays ``spin`` cycles on its
// SM, so the scheduler spreads a large grid over every SM the context may use.
extern "C" __global__ void sm_ids(unsigned int *out, long long spin) {
    const long long start = clock64();
    while (clock64() - start < spin) {
    }
    unsigned int id;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
    if (threadIdx.x == 0) out[blockIdx.x] = id;
}

// One thread busy-waits ``cycles`` SM cycles; out = {SM cycles, %globaltimer nanoseconds} of
// the wait: their ratio is the SM clock while the kernel ran.
extern "C" __global__ void sm_clock(unsigned long long *out, long long cycles) {
    unsigned long long t0, t1;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    const long long c0 = clock64();
    long long c1 = c0;
    while (c1 - c0 < cycles) c1 = clock64();
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t1));
    out[0] = (unsigned long long)(c1 - c0);
    out[1] = t1 - t0;
}
