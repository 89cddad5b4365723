"""Host emulations of ``kernels/topk.cu`` (``topk_rows``) and ``kernels/gather_nd.cu``
(``gather_nd``) for ``launch_emulator.run_launch``.

Each reads and writes exactly the elements its launch record names (RowWalk rows and elements
as ``rows.cuh`` walks them, View records as ``tx2_view_offset`` does; an int32 index table read
from the weight bytes, or int32 indices from the arena as ``rows_emulator.put_int32`` lays
them out), so a wrong stride, offset, count or table in a lowering changes the result. TopK's
order is written out here (descending or ascending, NaN above every number, ties by index);
``test_cuda_index.py`` checks the kernel's own comparison on the host.
"""
import numpy as np
from emulated_arena import view_offsets
from rows_emulator import _at, _elements, _rows, int32_at, put_int32, walk_offsets


def _rank_key(largest):
    def key(pair):
        v, j = pair
        nan = bool(np.isnan(v))
        if largest:
            return (not nan, 0.0 if nan else -v, j)
        return (nan, 0.0 if nan else v, j)
    return key


def topk_rows(memory, f):
    (src, x0), w, k = _at(memory, f['x']), f['w'], int(f['k_count'])
    x = src[x0 + walk_offsets(w, 'x')]
    picks = [sorted(zip(row.tolist(), range(len(row))), key=_rank_key(int(f['largest'])))[:k]
             for row in x]
    if f['values'].base != 'null':
        dst, y0 = _at(memory, f['values'])
        dst[y0 + walk_offsets(w, 'y')[:, :k]] = [[v for v, _ in row] for row in picks]
    if f['indices'].base != 'null':
        dst, i0 = _at(memory, f['indices'])
        at = (_rows(w, f['ir1'], f['ir2'], f['ir3'])[:, None]
              + _elements(w, f['ij1'], f['ij2'])[None, :k])
        got = [[j for _, j in row] for row in picks]
        if int(f['indices_i32']):
            put_int32(dst, i0, at, got)
        else:
            dst[i0 + at] = got


def gather_nd(memory, f):
    (src, x0), (dst, y0), n = _at(memory, f['x']), _at(memory, f['y']), int(f['n'])
    at = view_offsets(f['iv'], n)
    picked = x0 + view_offsets(f['xv'], n)
    inside = np.ones(n, bool)
    sel = f['sel']
    for k in range(int(sel['ndim'])):
        where = at + k * int(f['ik'])
        if f['table'].base == 'weights':
            table = np.frombuffer(memory['weight_bytes'], np.int32, offset=f['table'].offset)
            j = table[where].astype(np.int64)
        elif f['table'].base == 'arena':  # int32 indices computed at run time
            table, t0 = _at(memory, f['table'])
            j = table[int32_at(t0, where)]
            assert np.all(j == np.trunc(j)), 'int32 indices hold integers'
            j = j.astype(np.int64)
        else:
            idx, i0 = _at(memory, f['idx'])
            j = idx[i0 + where].astype(np.int64)
        size = int(sel['shape'][k])
        j = np.where(j < 0, j + size, j)
        inside &= (j >= 0) & (j < size)
        picked = picked + np.where(inside, j, 0) * int(sel['stride'][k])
    dst[y0 + view_offsets(f['yv'], n)] = np.where(inside, src[picked], np.nan)


KERNELS = {'topk_rows': topk_rows, 'gather_nd': gather_nd}
