"""The tile of a half2 SIMT convolution (``kernels/conv_h2.cu``, conv_path 'simt': the Jetson
TX2's path) for a GPU of ``sms`` SMs. Pure functions, no GPU.

Every tile gives a thread 8 x 8 outputs, so the inner loop is the same; a larger tile loads
less from global memory per product but makes fewer CTAs. ``h2_config`` takes the tile whose
modelled time is least: the rounds (waves) of resident CTAs the busiest SM runs, each as long
as the outputs it computes at the tile's rate, slowed where the SM holds few warps.
"""
H2_KW = 16  # H2_KW of kernels/conv_h2.cu: words (channel pairs) a chunk
# (BM, BN), the kernels conv_h2_<BM>x<BN> / conv_h2g_<BM>x<BN> that conv_h2.cu builds: at
# most 128 threads, as sm_62 gives a CTA 32K registers and a thread takes ~230
H2_TILES = ((128, 64), (64, 128), (64, 64), (128, 32))
H2_REGS = 232  # the most registers a conv_h2 kernel takes (ptxas, sm_62 and sm_90)
SM_REGS = 65536
SM_THREADS = 2048
SM_SMEM = 64 << 10  # sm_62's shared memory per SM (the H200 has more)


def h2_threads(bm: int, bn: int) -> int:
    """Threads of a conv_h2 CTA: one per 8 x 8 outputs."""
    return bm * bn // 64


def h2_smem(bm: int, bn: int) -> int:
    """Static shared memory of a conv_h2 CTA: two chunks of both tiles, the pixel table."""
    return 2 * H2_KW * (bm + 4 + bn + 4) * 4 + 16 * bm


def h2_resident(bm: int, bn: int) -> int:
    """CTAs of the tile one SM holds (registers, threads, sm_62's shared memory)."""
    threads = h2_threads(bm, bn)
    warp_regs = -(-H2_REGS * 32 // 256) * 256
    by_regs = (SM_REGS // warp_regs) // (threads // 32)
    return max(1, min(by_regs, SM_THREADS // threads, SM_SMEM // h2_smem(bm, bn)))


def h2_time(m: int, n: int, groups: int, sms: int, bm: int, bn: int) -> float:
    """Modelled time (arbitrary units) of an M x N GEMM (``groups`` of them) on the tile."""
    ctas = -(-m // bm) * -(-n // bn) * groups
    per_sm = -(-ctas // sms)
    together = min(per_sm, h2_resident(bm, bn))
    waves = -(-per_sm // together)
    warps = together * h2_threads(bm, bn) // 32
    rate = 1.0 / (1.0 + 8.0 / bm + 8.0 / bn)  # global words per product: 1/BM + 1/BN
    latency = warps / (warps + 2.0)  # few warps hide little of the shared-load latency
    return waves * together * bm * bn / (rate * latency)


def h2_config(m: int, n: int, groups: int, sms: int) -> tuple:
    """(BM, BN) of the conv_h2 launch of an M x N GEMM (``groups`` of them) on ``sms`` SMs:
    the least ``h2_time``, the larger tile on a tie."""
    return min(H2_TILES, key=lambda t: (h2_time(m, n, groups, sms, *t), -t[0] * t[1]))


def h2_module(bm: int, bn: int, gather: bool) -> str:
    """The module of a conv_h2 launch: kernels/conv_h2.cu built with one tile and loader."""
    return f'conv_h2@CONV_H2_TILE={bm * 1000 + bn}@CONV_H2_GATHER={int(gather)}'


def h2_kernel(bm: int, bn: int, gather: bool) -> str:
    """The kernel name: conv_h2_<BM>x<BN> (16-byte rows) or conv_h2g_<BM>x<BN> (gather)."""
    return f"conv_h2{'g' if gather else ''}_{bm}x{bn}"
