"""The .tx2plan file: a built engine (graph, weights, memory plan, specs, options) on disk.

Layout: ``MAGIC | u32 version | u64 header length | header JSON | weight blobs | checksum``.
The trailing checksum covers every byte before it: the sha256 of the sha256s of its 4 MiB
chunks, hashed side by side (hashlib releases the GIL), so a 100 MB plan checks in a fraction
of one core's 0.1 s. Loading never unpickles or executes anything:
the header is JSON and weights are raw little-endian arrays read with ``np.frombuffer``. The
checksum only detects accidents: every header field is validated (``plan_check``) before use.
"""
import base64
import hashlib
import json
import os
import stat
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tx2_infer_core import plan_check
from tx2_infer_core.errors import PlanFileError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.limits import DEFAULT_LIMITS

MAGIC = b'TX2PLAN\0'
FORMAT_VERSION = 2  # 2: the chunked checksum (1: one sha256)
_PREFIX = struct.Struct('<8sIQ')
_ALIGN = 64
# Largest plan file ``load_plan`` reads (bytes); its ``max_bytes`` argument changes it.
MAX_PLAN_BYTES = DEFAULT_LIMITS.max_file_bytes
_GRAPH_KEYS = ('name', 'inputs', 'outputs', 'meta', 'values', 'nodes')
CHUNK_BYTES = 4 << 20
HASH_THREADS = 8


def checksum(body) -> bytes:
    """The 32-byte checksum of ``body`` (bytes-like) a plan file ends with: sha256 over the
    sha256 digests of its ``CHUNK_BYTES`` chunks in order."""
    view = memoryview(body).cast('B')
    chunks = [view[i:i + CHUNK_BYTES] for i in range(0, len(view), CHUNK_BYTES)]
    workers = max(1, min(HASH_THREADS, os.cpu_count() or 1, len(chunks)))
    with ThreadPoolExecutor(workers) as pool:
        digests = pool.map(lambda chunk: hashlib.sha256(chunk).digest(), chunks)
        return hashlib.sha256(b''.join(digests)).digest()


def _encode_attr(value):
    if isinstance(value, np.ndarray):
        return {'__ndarray__': {'dtype': value.dtype.str, 'shape': list(value.shape),
                                'data': base64.b64encode(value.tobytes()).decode('ascii')}}
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_encode_attr(v) for v in value]
    return value


def _decode_attr(value):
    if isinstance(value, dict) and '__ndarray__' in value:
        spec = value['__ndarray__']
        raw = base64.b64decode(spec['data'], validate=True)
        dtype = plan_check.ATTR_DTYPES.get(str(spec['dtype']))
        if dtype is None:
            plan_check.refuse('attrs', f"array dtype {spec['dtype']!r} is not allowed")
        return np.frombuffer(raw, dtype).reshape(spec['shape']).copy()
    if isinstance(value, list):
        return [_decode_attr(v) for v in value]
    return value


def _graph_header(graph: Graph) -> dict:
    return {
        'name': graph.name, 'inputs': graph.inputs, 'outputs': graph.outputs,
        'meta': graph.meta,
        'values': [[v.name, list(v.shape), v.dtype, v.layout] for v in graph.values.values()],
        'nodes': [{'op': n.op, 'name': n.name, 'inputs': n.inputs, 'outputs': n.outputs,
                   'attrs': {k: _encode_attr(a) for k, a in n.attrs.items()}}
                  for n in graph.nodes],
    }


def save_plan(path, graph: Graph, memory_plan: dict, options: dict) -> None:
    """Write a plan file atomically (``memory_plan`` as a JSON-able dict)."""
    blobs, table, offset = [], [], 0
    for name, array in graph.weights.items():
        array = np.ascontiguousarray(array)
        data = array.astype(array.dtype.newbyteorder('<'), copy=False).tobytes()
        pad = (-len(data)) % _ALIGN
        table.append({'name': name, 'dtype': array.dtype.newbyteorder('<').str,
                      'shape': list(array.shape), 'offset': offset, 'nbytes': len(data)})
        blobs.append(data + b'\0' * pad)
        offset += len(data) + pad
    header = json.dumps({'format_version': FORMAT_VERSION, 'graph': _graph_header(graph),
                         'memory_plan': memory_plan, 'options': options,
                         'weights': table}).encode('utf-8')
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header + b''.join(blobs)
    tmp = f'{path}.part'
    with open(tmp, 'wb') as f:
        f.write(body)
        f.write(checksum(body))
    os.replace(tmp, path)


def _parse_prefix(data: bytes, path) -> int:
    if len(data) < _PREFIX.size + 32:
        raise PlanFileError(f'{path}: too short to be a plan file ({len(data)} bytes)')
    magic, version, header_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise PlanFileError(f'{path}: not a tx2plan file (bad magic {magic!r})')
    if version != FORMAT_VERSION:
        raise PlanFileError(f'{path}: plan format version {version}, this build reads '
                            f'{FORMAT_VERSION}; rebuild the plan')
    if checksum(memoryview(data)[:-32]) != data[-32:]:  # no 100 MB copy
        raise PlanFileError(f'{path}: checksum mismatch (corrupted or truncated plan file)')
    return header_len


def _graph_from_header(h: dict, weights: dict) -> Graph:
    values = {name: Value(name, tuple(shape), np.dtype(dtype).name, layout)
              for name, shape, dtype, layout in h['values']}
    nodes = [Node(n['op'], n['name'], n['inputs'], n['outputs'],
                  {k: _decode_attr(a) for k, a in n['attrs'].items()}) for n in h['nodes']]
    return Graph(nodes=nodes, inputs=h['inputs'], outputs=h['outputs'], values=values,
                 weights=weights, name=h['name'], meta=h['meta'])


def _read(path, max_bytes) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (never blocks on a FIFO)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise PlanFileError(f'plan file {path} is not a regular file')
        if info.st_size > max_bytes:
            raise PlanFileError(f'plan file {path} is {info.st_size} bytes, more than the '
                                f'limit of {max_bytes}')
        with open(path, 'rb') as f:
            return f.read(max_bytes + 1)
    except OSError as exc:
        raise PlanFileError(f'cannot read plan file {path}: {exc}') from exc


def _checked_header(data, header_len, path, max_arena_bytes) -> dict:
    """The header, parsed, with its weights, values and nodes validated (``plan_check``)."""
    start = _PREFIX.size
    blob_bytes = len(data) - 32 - start - header_len
    if blob_bytes < 0:
        raise PlanFileError(f'{path}: header length {header_len} runs past the end of the file')
    try:
        header = json.loads(data[start:start + header_len].decode('utf-8'))
    except (ValueError, RecursionError) as exc:
        raise PlanFileError(f'{path}: the plan header is not valid JSON: {exc}') from None
    if not isinstance(header, dict) or not isinstance(header.get('graph'), dict):
        plan_check.refuse('graph', 'missing, or the header is not an object')
    missing = [k for k in _GRAPH_KEYS if k not in header['graph']]
    if missing or not isinstance(header.get('options'), dict):
        plan_check.refuse('graph', f'has no {missing}, or options is not an object')
    if not isinstance(header['graph']['meta'], dict):
        plan_check.refuse('graph.meta', 'is not an object')
    plan_check.check_weights(header.get('weights'), blob_bytes)
    plan_check.check_values(header['graph']['values'], max_arena_bytes)
    plan_check.check_nodes(header['graph'], [w['name'] for w in header['weights']])
    return header


def load_plan(path, max_bytes=MAX_PLAN_BYTES, max_arena_bytes=plan_check.MAX_ARENA_BYTES):
    """Read a plan file; returns (graph, MemoryPlan, options dict).

    Anything wrong with the file (unreadable, not a regular file, over ``max_bytes``, corrupted,
    a crafted header: see ``plan_check``, an arena over ``max_arena_bytes``) raises
    ``PlanFileError`` naming the problem.
    """
    data = _read(path, max_bytes)
    header_len = _parse_prefix(data, path)
    try:
        header = _checked_header(data, header_len, path, max_arena_bytes)
        graph = _graph_from_header(header['graph'], _weights(data, header, header_len))
        plan_check.check_graph(graph)
        memory_plan = plan_check.check_memory_plan(graph, header.get('memory_plan'),
                                                   max_arena_bytes, header['options'].get(
                                                       'model', graph.name))
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise PlanFileError(f'{path}: malformed plan header: {exc}') from exc
    except PlanFileError as exc:
        message = str(exc)
        raise PlanFileError(message if str(path) in message else f'{path}: {message}') from None
    return graph, memory_plan, header['options']


def _weights(data, header, header_len) -> dict:
    """The weight arrays (read-only views of ``data``, not copies) of a validated header."""
    weights, base, view = {}, _PREFIX.size + header_len, memoryview(data)
    for entry in header['weights']:
        lo = base + entry['offset']
        weights[entry['name']] = np.frombuffer(
            view[lo:lo + entry['nbytes']], np.dtype(entry['dtype'])).reshape(entry['shape'])
    return weights
