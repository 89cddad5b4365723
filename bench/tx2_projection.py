"""The maths and the report of ``bench_tx2_slice.py``: per-SM efficiency of each kernel launch
timed in an SM slice of a big GPU, and the latency a Jetson TX2 (sm_62: 2 SMs at 1.3 GHz,
59.7 GB/s) would take for it. Pure functions of measured numbers; no GPU, no pycuda.

Efficiency is against the half2 FMA peak, 512 FLOP per clock per SM on Pascal and Hopper
alike: ``eff = flops / (seconds * SMs * 512 * clock)``. A launch's TX2 time is the compute time
at its own measured efficiency, ``flops / (2 * 512 * 1.3e9 * eff)`` (which is the slice time
scaled by SM count and clock, and is how launches without FLOPs are scaled too), or the time
to move its bytes at 59.7 GB/s, whichever is longer.
"""
import numpy as np

from tx2_infer_core.errors import Tx2InferError

TX2_SMS = 2
TX2_CLOCK_HZ = 1.3e9
TX2_BYTES_PER_S = 59.7e9
HALF2_FLOP_PER_CLOCK_SM = 512
GOAL_EFFICIENCY = 0.55
SEED_MS = {'resnet50': 9.8, 'yolov5s': 22.4}  # the seed's TX2 figures
# Per-SM residency limits: threads, 32-bit registers, shared memory bytes, CTAs.
SM_LIMITS = {62: (2048, 65536, 64 << 10, 32), 90: (2048, 65536, 228 << 10, 32)}
REG_UNIT = 256  # registers are given to a warp in units of 256
GROUPS = ('3x3', '1x1', 'other conv', 'rest')
# conv_simt multiplies in FP32 (fmaf, 256 FLOP/clock/SM): at most half of the half2 peak.
SIMT_FP32_CEILING = 0.5


def efficiency(flops, ms, sms, clock_hz) -> float:
    """Fraction of the half2 FMA peak of ``sms`` SMs at ``clock_hz`` that ``flops`` in ``ms``
    reach (0 for no time or no FLOPs)."""
    if ms <= 0 or flops <= 0:
        return 0.0
    return flops / (ms * 1e-3 * sms * HALF2_FLOP_PER_CLOCK_SM * clock_hz)


def memory_ms(nbytes) -> float:
    """Milliseconds to move ``nbytes`` at the TX2's 59.7 GB/s."""
    return nbytes / TX2_BYTES_PER_S * 1e3


def scaled_ms(slice_ms, slice_sms, clock_hz) -> float:
    """A time measured on ``slice_sms`` SMs at ``clock_hz``, scaled to 2 SMs at 1.3 GHz (the
    same per-SM efficiency)."""
    return slice_ms * slice_sms * clock_hz / (TX2_SMS * TX2_CLOCK_HZ)


def tx2_ms(slice_ms, nbytes, slice_sms, clock_hz) -> float:
    """A launch's TX2 time at its measured per-SM efficiency (``scaled_ms``), or its memory
    time."""
    return max(scaled_ms(slice_ms, slice_sms, clock_hz), memory_ms(nbytes))


def tx2_ms_at(flops, nbytes, eff=GOAL_EFFICIENCY) -> float:
    """A launch's TX2 time at efficiency ``eff``, or its memory time."""
    compute = flops / (TX2_SMS * HALF2_FLOP_PER_CLOCK_SM * TX2_CLOCK_HZ * eff) * 1e3
    return max(compute, memory_ms(nbytes))


def resident_ctas(threads, regs, smem, arch) -> int:
    """CTAs of ``threads`` threads, ``regs`` registers a thread and ``smem`` bytes of static
    shared memory that fit on one SM of compute capability ``arch`` (62 or 90)."""
    max_threads, max_regs, max_smem, max_ctas = SM_LIMITS[arch]
    warps = -(-threads // 32)
    warp_regs = -(-regs * 32 // REG_UNIT) * REG_UNIT
    by_regs = (max_regs // warp_regs) // warps if warp_regs else max_ctas
    by_smem = max_smem // smem if smem else max_ctas
    return max(0, min(max_threads // threads, by_regs, by_smem, max_ctas))


def waves(ctas, sms, resident) -> int:
    """Rounds of ``resident`` CTAs per SM on ``sms`` SMs needed to run ``ctas`` CTAs."""
    return -(-ctas // (sms * max(resident, 1)))


def fill(ctas, sms, resident) -> float:
    """Fraction of the CTA slots of those rounds that the launch fills."""
    return ctas / (waves(ctas, sms, resident) * sms * max(resident, 1))


def tx2_ms_waves(slice_ms, ctas, resident, slice_sms, clock_hz, nbytes) -> float:
    """A launch's TX2 time by rounds of resident CTAs: the slice's time per round, clock
    scaled, times the rounds 2 SMs need. Where the slice is not full (fewer CTAs than
    ``slice_sms * resident``) this is below ``tx2_ms``."""
    per_round = slice_ms / waves(ctas, slice_sms, resident) * clock_hz / TX2_CLOCK_HZ
    return max(per_round * waves(ctas, TX2_SMS, resident), memory_ms(nbytes))


def group(op, kernel, kernel_shape) -> str:
    """'3x3', '1x1' or 'other conv' for a convolution on the GEMM kernels (``conv_simt*``),
    else 'rest' (direct/depthwise convolutions, GEMMs, pooling, elementwise, copies)."""
    if op not in ('Conv', 'FusedConv') or not kernel.startswith('conv_simt'):
        return 'rest'
    r, s = kernel_shape
    return f'{r}x{s}' if (r, s) in ((3, 3), (1, 1)) else 'other conv'


def pick_clock(probe_hz, attribute_hz) -> tuple:
    """(SM clock in Hz for the efficiencies, where it came from): the median of the measured
    ``probe_hz`` where it is plausible (30 to 120 % of the ``attribute_hz``, the device's
    CLOCK_RATE, when known), else the attribute."""
    measured = float(np.median(probe_hz)) if len(probe_hz) else 0.0
    if measured > 0 and (not attribute_hz or 0.3 <= measured / attribute_hz <= 1.2):
        return measured, 'probe'
    if attribute_hz:
        return float(attribute_hz), 'attribute'
    raise Tx2InferError('no SM clock: the probe gave none and CLOCK_RATE is unknown')


def launch_row(base, slice_t, full_t, slice_sms, full_sms, clock_hz) -> dict:
    """One launch's row: ``base`` (kernel, op, kernel_shape, ctas, resident, flops, bytes,
    ...) with its slice and full-GPU times (``slice_t``, ``full_t``: median_ms, p99_ms),
    efficiencies and TX2 times."""
    ms, flops, nbytes = slice_t['median_ms'], base['flops'], base['bytes']
    ctas, resident = base['ctas'], base['resident']
    return dict(base, group=group(base['op'], base['kernel'], base['kernel_shape']),
                slice_ms=ms, slice_p99_ms=slice_t['p99_ms'], full_ms=full_t['median_ms'],
                full_p99_ms=full_t['p99_ms'],
                eff_slice=efficiency(flops, ms, slice_sms, clock_hz),
                eff_full=efficiency(flops, full_t['median_ms'], full_sms, clock_hz),
                fills_slice=ctas >= slice_sms * resident,
                tx2_fill=fill(ctas, TX2_SMS, resident),
                tx2_ms=tx2_ms(ms, nbytes, slice_sms, clock_hz),
                tx2_ms_at_goal=tx2_ms_at(flops, nbytes),
                tx2_ms_waves=tx2_ms_waves(ms, ctas, resident, slice_sms, clock_hz, nbytes),
                memory_bound=memory_ms(nbytes) > scaled_ms(ms, slice_sms, clock_hz))


def aggregate(rows, slice_sms, clock_hz) -> dict:
    """Per group: launches, FLOPs, slice time, the time-weighted efficiency over all its
    launches and over those that fill the slice, and the spread of per-launch efficiencies."""
    out = {}
    for name in GROUPS:
        mine = [r for r in rows if r['group'] == name]
        if not mine:
            continue
        full = [r for r in mine if r['fills_slice']]
        effs = [r['eff_slice'] for r in mine]
        out[name] = dict(
            launches=len(mine), flops=sum(r['flops'] for r in mine),
            slice_ms=sum(r['slice_ms'] for r in mine),
            eff=_weighted(mine, slice_sms, clock_hz),
            eff_filled=_weighted(full, slice_sms, clock_hz) if full else None,
            filled_launches=len(full), eff_min=min(effs), eff_median=float(np.median(effs)),
            eff_max=max(effs))
    return out


def _weighted(rows, sms, clock_hz) -> float:
    return efficiency(sum(r['flops'] for r in rows), sum(r['slice_ms'] for r in rows), sms,
                      clock_hz)


def projection(rows, seed_ms=None) -> dict:
    """A model's TX2 latency: sums over its launches of ``tx2_ms`` (measured efficiency),
    ``tx2_ms_at_goal`` (55 %) and ``tx2_ms_waves``, the memory-bound share, and the seed's
    figure beside them."""
    total = sum(r['tx2_ms'] for r in rows)
    return dict(tx2_ms=total, tx2_ms_at_goal=sum(r['tx2_ms_at_goal'] for r in rows),
                tx2_ms_waves=sum(r['tx2_ms_waves'] for r in rows),
                memory_bound_launches=sum(r['memory_bound'] for r in rows),
                memory_bound_ms=sum(r['tx2_ms'] for r in rows if r['memory_bound']),
                launches=len(rows), seed_ms=seed_ms,
                vs_seed=total / seed_ms if seed_ms else None)


def underfilled(rows, below=0.5) -> list:
    """The launches that fill less than ``below`` of the CTA slots of 2 SMs (candidates for
    smaller tiles or split-K on the TX2), largest projected time first."""
    low = [r for r in rows if r['group'] != 'rest' and r['tx2_fill'] < below]
    return [dict(index=r['index'], node=r['node'], kernel=r['kernel'], ctas=r['ctas'],
                 resident=r['resident'], tx2_fill=r['tx2_fill'], tx2_ms=r['tx2_ms'])
            for r in sorted(low, key=lambda r: -r['tx2_ms'])]


def analyse(name, raw, slice_sms, full_sms, clock_hz) -> dict:
    """A model's entry: its measurements (rows in place of ``base``), the per-group
    efficiencies, the TX2 projection and the launches that underfill 2 SMs."""
    if 'error' in raw:
        return raw
    rows = [launch_row(b, s, f, slice_sms, full_sms, clock_hz)
            for b, s, f in zip(raw['base'], raw['slice']['launch_times'],
                               raw['full']['launch_times'])]
    entry = {k: v for k, v in raw.items() if k != 'base'}
    entry['slice'] = {k: v for k, v in raw['slice'].items() if k != 'launch_times'}
    entry['full'] = {k: v for k, v in raw['full'].items() if k != 'launch_times'}
    return dict(entry, aggregates=aggregate(rows, slice_sms, clock_hz),
                projection=projection(rows, SEED_MS.get(name)),
                underfilled_on_tx2=underfilled(rows)[:10], rows=rows)


def summary(models) -> dict:
    """Per model: TX2 projections, seed figure, 3x3 and 1x1 efficiencies, slice kernels."""
    out = {}
    for name, m in models.items():
        if 'error' in m:
            out[name] = dict(error=m['error'])
            continue
        agg, proj = m['aggregates'], m['projection']
        out[name] = dict(
            tx2_ms=proj['tx2_ms'], tx2_ms_waves=proj['tx2_ms_waves'],
            tx2_ms_at_goal=proj['tx2_ms_at_goal'], seed_ms=proj['seed_ms'],
            eff_3x3=agg.get('3x3', {}).get('eff'), eff_3x3_filled=agg.get('3x3', {}).get(
                'eff_filled'), eff_1x1=agg.get('1x1', {}).get('eff'),
            slice_kernels_ms=m['slice']['kernels']['median_ms'],
            slice_distinct_sms=m['slice'].get('distinct_sms'),
            full_kernels_ms=m['full']['kernels']['median_ms'])
    return out


def print_summary(result):
    """The document's summary, one line a model."""
    print(f"slice {result['slice']['sm_count']} of {result['slice']['device_sms']} SMs, "
          f"clock {result['clock']['used_hz'] / 1e6:.0f} MHz ({result['clock']['used']})")
    for name, s in result['summary'].items():
        if 'error' in s:
            print(f"{name:12} {s['error'][:100]}")
            continue
        eff = ' '.join(f'{k[4:]} {v:.3f}' for k, v in s.items()
                       if k.startswith('eff') and v is not None)
        seed = f" seed {s['seed_ms']}" if s['seed_ms'] else ''
        print(f"{name:12} slice ({s['slice_distinct_sms']} SMs reached) "
              f"{s['slice_kernels_ms']:8.3f} ms  eff {eff}  TX2 "
              f"{s['tx2_ms']:7.2f} ms (waves {s['tx2_ms_waves']:.2f}, at 55 % "
              f"{s['tx2_ms_at_goal']:.2f}){seed}", flush=True)


METHOD = (
    'Kernel times: CUDA events recorded between the launches of one captured CUDA graph '
    '(external event-record nodes), median and p99 over the replays, inside a green context '
    'of the slice SMs and on the whole GPU (the same launches, lowered for the slice). FLOPs: '
    'tx2_infer_core.flops per node (2 per multiply-add), on the node\'s first launch; bytes: '
    'the node\'s FP16 inputs (weights too) and outputs once (bench_ours.launch_bytes). '
    'Efficiency: flops / (time x SMs x 512 FLOP/clock x SM clock), the clock measured by '
    'kernels/probe.cu sm_clock (clock64 against %globaltimer) where it is plausible, else the '
    'CLOCK_RATE attribute. TX2 per launch: max(slice time x slice SMs x clock / (2 x 1.3 GHz), '
    'bytes / 59.7 GB/s), i.e. the launch at its own measured per-SM efficiency on 2 SMs, or '
    'memory-bound; tx2_ms_at_goal: the same at 55 % efficiency; tx2_ms_waves: the slice time '
    'per round of resident CTAs times the rounds 2 SMs need (lower where the slice is not '
    'full). Not modelled: launch gaps on the TX2, its 512 KB L2 (the slice runs with the '
    'H200\'s 50 MB L2: memory-bound layers are floored at 59.7 GB/s instead), Pascal vs '
    'Hopper instruction latencies.')
