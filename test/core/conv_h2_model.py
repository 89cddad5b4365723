"""A numpy emulation of the index math of ``kernels/conv_h2.cu``: every CTA of a launch, every
chunk, every thread's loads into the shared tiles (rows loader: one 16-byte load of 4 words;
gather loader: one word of two halves, each its own tap) and every thread's outputs, written
as the kernel writes them (the pixel table, the tap of a k value, the bounds tests, the
weight rows). The products are summed exactly (float64): this checks where the kernel reads
and writes, not its FP16 rounding (``simt_h2_cases.h2_accumulate`` models that).

``emulate`` returns the NHWC output it would write and how often each output and each shared
word was written, so a test can ask for every output exactly once and every staged word
exactly once a chunk.
"""
import numpy as np

from tx2_infer_core.cuda.simt_tiles import H2_KW, h2_threads

FAR = -(1 << 30)  # h2_pixel's row of a pixel past M


def pixel_table(f, m0, bm, g):
    """h2_pixel for rows m0 .. m0 + bm - 1: (ih0, iw0, element offset) arrays."""
    m = m0 + np.arange(bm)
    valid = m < f['N'] * f['P'] * f['Q']
    ow, t = m % f['Q'], m // f['Q']
    oh, img = t % f['P'], t // f['P']
    ih0, iw0 = oh * f['sh'] - f['ph'], ow * f['sw'] - f['pw']
    base = (img * f['H'] * f['W'] * f['x_pix'] + f['x_off'] + g * f['Cg']
            + (ih0 * f['W'] + iw0) * f['x_pix'])
    return np.where(valid, ih0, FAR), np.where(valid, iw0, 0), np.where(valid, base, 0)


def tap(f, k):
    """h2_tap of half indices ``k``: (dr, ds, offset, inside k)."""
    rs = k // f['Cg']
    c = k - rs * f['Cg']
    r = rs // f['S']
    s = rs - r * f['S']
    dr, ds = r * f['dh'], s * f['dw']
    return dr, ds, (dr * f['W'] + ds) * f['x_pix'] + c, r < f['R']


def inside(f, pix, rows, t):
    ih0, iw0, _ = pix
    dr, ds, _, kin = t
    return (kin & (ih0[rows] + dr >= 0) & (ih0[rows] + dr < f['H'])
            & (iw0[rows] + ds >= 0) & (iw0[rows] + ds < f['W']))


def wrow(f, n, g):
    """h2_wrow: the element offset of output channel n's weights, -1 past Kg."""
    return np.where(n < f['Kg'], (g * f['Kg'] + n) * f['R'] * f['S'] * f['Cg'], -1)


def rows_loads(f, x, w, pix, n0, g, k0, bm, bn):
    """H2Rows::load + store: [(tile, word, row, two halves)] for A and B."""
    t_count = h2_threads(bm, bn)
    rp = t_count // 4
    tid = np.arange(t_count)
    u, row = tid // rp, tid % rp
    kw = k0 + 4 * u
    t = tap(f, 2 * kw)
    out = []
    for i in range(bm // rp):
        rows = row + i * rp
        ok = inside(f, pix, rows, t)
        start = np.where(ok, pix[2][rows] + t[2], 0)
        for j in range(4):
            halves = np.where(ok[:, None], x[start[:, None] + 2 * j + np.arange(2)], 0)
            out.append(('A', 4 * u + j, rows, halves))
    for i in range(bn // rp):
        rows = row + i * rp
        wr = wrow(f, n0 + rows, g)
        ok = (wr >= 0) & t[3]
        start = np.where(ok, wr + 2 * kw, 0)
        for j in range(4):
            halves = np.where(ok[:, None], w[start[:, None] + 2 * j + np.arange(2)], 0)
            out.append(('B', 4 * u + j, rows, halves))
    return out


def gather_loads(f, x, w, pix, n0, g, k0, bm, bn):
    """H2Gather::load + store: [(tile, word, row, two halves)] for A and B."""
    t_count = h2_threads(bm, bn)
    rp = t_count // 16
    tid = np.arange(t_count)
    kw, row = tid % 16, tid // 16
    k = 2 * (k0 + kw)
    taps = (tap(f, k), tap(f, k + 1))
    big_k = f['R'] * f['S'] * f['Cg']
    out = []
    for i in range(bm // rp):
        rows = row + i * rp
        lanes = []
        for t in taps:
            ok = inside(f, pix, rows, t)
            lanes.append(np.where(ok, x[np.where(ok, pix[2][rows] + t[2], 0)], 0))
        out.append(('A', kw, rows, np.stack(lanes, 1)))
    for i in range(bn // rp):
        rows = row + i * rp
        wr = wrow(f, n0 + rows, g)
        lanes = []
        for kk in (k, k + 1):
            ok = (wr >= 0) & (kk < big_k)
            lanes.append(np.where(ok, w[np.where(ok, wr + kk, 0)], 0))
        out.append(('B', kw, rows, np.stack(lanes, 1)))
    return out


def thread_outputs(bm, bn):
    """(tile row, tile column) of each thread's 8 x 8 outputs: [threads, 8] each."""
    tid = np.arange(h2_threads(bm, bn))
    tx, ty = tid % (bn // 8), tid // (bn // 8)
    quad = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    far = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    return ty[:, None] * 4 + quad + far * bm // 2, tx[:, None] * 4 + quad + far * bn // 2


def emulate(f, x, w, bm, bn, gather):
    """(y [M, K] float64 as the launch writes it, writes per output, most writes of one
    shared word in one chunk, fewest) for fields ``f`` (ConvParams), flat input ``x`` and
    weights ``w``."""
    m_all, kg, groups = f['N'] * f['P'] * f['Q'], f['Kg'], f['groups']
    y = np.zeros((m_all, kg * groups))
    writes = np.zeros(y.shape, int)
    chunks = -(-(-(-f['R'] * f['S'] * f['Cg'] // 2)) // H2_KW)
    loads = gather_loads if gather else rows_loads
    rows_of, cols_of = thread_outputs(bm, bn)
    most, fewest = 0, 1 << 30
    for g in range(groups):
        for m0 in range(0, m_all, bm):
            pix = pixel_table(f, m0, bm, g)
            for n0 in range(0, kg, bn):
                acc = np.zeros((bm, bn))
                for c in range(chunks):
                    tiles = {'A': np.zeros((H2_KW, bm, 2)), 'B': np.zeros((H2_KW, bn, 2))}
                    count = {'A': np.zeros((H2_KW, bm), int), 'B': np.zeros((H2_KW, bn), int)}
                    for name, word, rows, halves in loads(f, x, w, pix, n0, g, c * H2_KW,
                                                          bm, bn):
                        tiles[name][word, rows] = halves
                        np.add.at(count[name], (word, rows), 1)
                    most = max(most, count['A'].max(), count['B'].max())
                    fewest = min(fewest, count['A'].min(), count['B'].min())
                    acc += np.einsum('kml,knl->mn', tiles['A'], tiles['B'])
                m = m0 + rows_of
                k = n0 + cols_of[:, None, :].repeat(8, 1)
                m = m[:, :, None].repeat(8, 2)
                keep = (m < m_all) & (k < kg)
                vals = acc[rows_of[:, :, None], cols_of[:, None, :]]
                y[m[keep], g * kg + k[keep]] = vals[keep]
                np.add.at(writes, (m[keep], g * kg + k[keep]), 1)
    return y, writes, most, fewest
