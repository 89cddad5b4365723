"""conv_h2 (kernels/conv_h2.cu, the half2 SIMT convolution) without a GPU: its index math
emulated in numpy (conv_h2_model.py) on odd shapes, strides, pads, dilations, channel views
and groups, for every tile and both loaders, against the numpy convolution; the tile choice
(cuda/simt_tiles.py); what the SIMT lowering launches; the f16x2 instructions of its PTX."""
import collections

import numpy as np
import pytest

import conv_h2_model as emu
import simt_h2_cases
from tx2_infer_core.cuda import compile as cc, simt_tiles
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ops.conv import Conv

# (N, Cg, H, W, Kg, R, S, stride, pad, dilation, groups, extra input channels before the view)
GEOMETRIES = [
    (1, 16, 9, 7, 24, 3, 3, 1, 1, 1, 1, 0),      # 3x3, K = 144: 9 chunks' worth of taps
    (2, 8, 11, 6, 40, 3, 3, 2, 1, 1, 1, 8),       # stride 2, two images, a channel view
    (1, 24, 7, 9, 8, 3, 3, 1, 2, 2, 1, 0),        # dilation 2, pad 2
    (1, 32, 5, 5, 70, 1, 1, 1, 0, 1, 1, 0),       # 1x1, Kg not a multiple of the tile
    (1, 8, 6, 10, 16, 3, 2, 1, (1, 0), 1, 2, 0),  # groups, a 3x2 kernel, asymmetric pads
    (1, 3, 13, 12, 16, 3, 3, 2, 1, 1, 1, 0),      # the 3-channel stem (gather only)
    (1, 3, 15, 15, 20, 7, 7, 2, 3, 1, 1, 0),      # a 7x7 stem
    (1, 5, 6, 5, 6, 2, 2, 1, 0, 1, 1, 1),         # odd Cg at an odd view offset
]


def _fields(n, cg, h, wd, kg, r, s, st, pad, dil, groups, off):
    ph, pw = pad if isinstance(pad, tuple) else (pad, pad)
    p = (h + 2 * ph - dil * (r - 1) - 1) // st + 1
    q = (wd + 2 * pw - dil * (s - 1) - 1) // st + 1
    return dict(N=n, H=h, W=wd, P=p, Q=q, Cg=cg, Kg=kg, groups=groups, R=r, S=s, sh=st, sw=st,
                ph=ph, pw=pw, dh=dil, dw=dil, x_off=off, x_pix=off + cg * groups + off % 8)


def _case(geo, seed=0):
    """(fields, flat NHWC input, flat OHWI weights, reference [M, K] float64)."""
    f = _fields(*geo)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((f['N'], f['H'], f['W'], f['x_pix']))
    w = rng.standard_normal((f['Kg'] * f['groups'], f['R'], f['S'], f['Cg']))
    view = x[..., f['x_off']:f['x_off'] + f['Cg'] * f['groups']].transpose(0, 3, 1, 2)
    pads = [f['ph'], f['pw'], f['ph'] + f['sh'], f['pw'] + f['sw']]  # extra end pad: cut
    ref = Conv(view, w.transpose(0, 3, 1, 2), strides=[f['sh'], f['sw']], pads=pads,
               dilations=[f['dh'], f['dw']], group=f['groups'])[:, :, :f['P'], :f['Q']]
    return f, x.reshape(-1), w.reshape(-1), ref.transpose(0, 2, 3, 1).reshape(-1, ref.shape[1])


def _rows_ok(f):
    return all(v % 8 == 0 for v in (f['Cg'], f['x_pix'], f['x_off']))


@pytest.mark.parametrize('tile', simt_tiles.H2_TILES, ids=lambda t: f'{t[0]}x{t[1]}')
@pytest.mark.parametrize('geo', GEOMETRIES, ids=[str(i) for i in range(len(GEOMETRIES))])
def test_every_output_once_and_right(geo, tile):
    """Every output written exactly once, every staged word of every chunk exactly once, and
    the exact sums equal the convolution, for the gather loader and (where the layer is
    16-byte aligned) the rows loader."""
    f, x, w, ref = _case(geo)
    for gather in (True, False) if _rows_ok(f) else (True,):
        y, writes, most, fewest = emu.emulate(f, x, w, *tile, gather)
        assert writes.min() == 1 and writes.max() == 1, gather
        assert most == 1 and fewest == 1, gather
        np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-9, err_msg=str(gather))


def test_emulation_catches_a_wrong_tap():
    """The emulation is sharp: a tap that forgets the dilation reads the wrong pixels."""
    f, x, w, ref = _case(GEOMETRIES[2])
    tap = emu.tap
    try:
        emu.tap = lambda f2, k: tap(dict(f2, dh=1, dw=1), k)
        y = emu.emulate(f, x, w, 64, 64, True)[0]
    finally:
        emu.tap = tap
    assert not np.allclose(y, ref)


# -- the tile choice -----------------------------------------------------------------------
@pytest.mark.parametrize('m,n', [(49, 512), (169, 1024), (196, 256), (3136, 64), (25600, 32),
                                 (173056, 16), (1, 1000)])
@pytest.mark.parametrize('sms', [2, 8])
def test_tile_choice_is_the_least_modelled_time(m, n, sms):
    bm, bn = simt_tiles.h2_config(m, n, 1, sms)
    best = min(simt_tiles.h2_time(m, n, 1, sms, *t) for t in simt_tiles.H2_TILES)
    assert simt_tiles.h2_time(m, n, 1, sms, bm, bn) == best
    if n <= 32:
        assert bn == 32  # a 32-wide tile for narrow layers: no half-empty 64-wide tiles


def test_tiles_fit_an_sm62_cta():
    """At most 128 threads a CTA (sm_62: 32K registers a CTA) and 48 KB of shared memory."""
    for bm, bn in simt_tiles.H2_TILES:
        assert simt_tiles.h2_threads(bm, bn) * simt_tiles.H2_REGS <= 32 * 1024
        assert simt_tiles.h2_smem(bm, bn) <= 48 * 1024


def test_a_small_layer_takes_a_smaller_tile_on_more_sms():
    """YOLOv3-tiny conv_12 (13 x 13 pixels, 1024 channels): 64 x 128 on the TX2's 2 SMs,
    64 x 64 on an 8-SM slice, so the slice's SMs all get CTAs."""
    assert simt_tiles.h2_config(169, 1024, 1, 2) == (64, 128)
    assert simt_tiles.h2_config(169, 1024, 1, 8) == (64, 64)


# -- the lowering ----------------------------------------------------------------------------
def _convs(graph, arch, path, sms=2):
    return [k for k in lower_graph(graph, arch, path, sms).launches
            if k.kernel.startswith(('conv_h2', 'conv_simt'))]


@pytest.fixture(scope='module')
def tiny():
    return simt_h2_cases.model_env('yolov3-tiny')[0]


@pytest.mark.parametrize('arch,path', [(62, 'auto'), (62, 'simt'), (90, 'simt')])
def test_simt_lowering_launches_conv_h2(tiny, arch, path):
    """The stem on the gather loader, every other conv on 16-byte rows; each launch's module
    builds its one tile and loader, its grid covers M x Kg with that tile."""
    convs = _convs(tiny, arch, path)
    assert len(convs) == 13
    for k in convs:
        f = k.fields
        m = int(f['N'] * f['P'] * f['Q'])
        bm, bn = simt_tiles.h2_config(m, int(f['Kg']), int(f['groups']), 2)
        gather = k.node == 'conv_0'
        assert k.kernel == simt_tiles.h2_kernel(bm, bn, gather)
        assert k.module.startswith(simt_tiles.h2_module(bm, bn, gather) + '@TX2_ACTS=')
        assert k.grid == (-(-m // bm), -(-int(f['Kg']) // bn), 1)
        assert k.block == (simt_tiles.h2_threads(bm, bn), 1, 1)


def test_simt_v1_keeps_the_old_kernels_with_the_same_records(tiny):
    new, old = _convs(tiny, 62, 'simt'), _convs(tiny, 62, 'simt_v1')
    assert [k.kernel for k in old] == ['conv_simt_h2'] + ['conv_simt_h2_v8'] * 12
    bases = collections.defaultdict(int)  # every buffer at 0: the records compare as bytes
    for a, b in zip(new, old):
        assert a.node == b.node
        assert a.bind(bases).tobytes() == b.bind(bases).tobytes()


# -- the instructions ------------------------------------------------------------------------
@pytest.mark.skipif(not cc.nvrtc_available(), reason='nvidia-cuda-nvrtc-cu12 not installed')
@pytest.mark.parametrize('arch', [62, 72, 87])
def test_ptx_multiplies_in_half2(arch):
    """A chunk: 16 words x 8 x 8 outputs of f16x2 products (the first word a multiply), one
    FP16 lane sum a flush per output; both loaders of one tile."""
    ptx = cc.nvrtc_compile('conv_h2', arch, {'CONV_H2_TILE': 128064, 'TX2_ACTS': 0},
                           ptx=True).decode()
    for name in ('conv_h2_128x64', 'conv_h2g_128x64'):
        start = ptx.index(f'.entry {name}(')
        nxt = ptx.find('.entry ', start + 1)
        body = ptx[start:nxt if nxt > 0 else len(ptx)]
        assert body.count('fma.rn.f16x2') == 15 * 64, name
        assert body.count('mul.rn.f16x2') == 64, name
        assert body.count('add.f16 ') + body.count('add.rn.f16 ') == 64, name


@pytest.mark.parametrize('row', simt_h2_cases.SYNTHETIC,
                         ids=[r[0] for r in simt_h2_cases.SYNTHETIC])
def test_model_of_the_synthetic_layers_is_within_the_gpu_tolerance(row):
    """The GPU tests' made-up layers: conv_h2's arithmetic (flat words) is within
    REL_L2_TOL / 2 of the float64 reference, so the tolerance there has room."""
    case = simt_h2_cases.synthetic_case(*row)
    pixels = simt_h2_cases.sample_pixels(case, 16)
    ref = case[2][0].reshape(case[2].shape[1], -1)[:, pixels].T
    got = simt_h2_cases.h2_model(case, pixels, flat=True)
    assert simt_h2_cases.rel_l2(got, ref) < simt_h2_cases.REL_L2_TOL / 2
