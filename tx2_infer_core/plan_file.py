"""The .tx2plan file: a built engine (graph, weights, memory plan, specs, options) on disk.

Layout: ``MAGIC | u32 version | u64 header length | header JSON | weight blobs | sha256``.
The trailing sha256 covers every byte before it. Loading never unpickles or executes anything:
the header is JSON and weights are raw little-endian arrays read with ``np.frombuffer``.
"""
import base64
import hashlib
import json
import os
import struct

import numpy as np

from tx2_infer_core.errors import PlanFileError
from tx2_infer_core.ir import Graph, Node, Value

MAGIC = b'TX2PLAN\0'
FORMAT_VERSION = 1
_PREFIX = struct.Struct('<8sIQ')
_ALIGN = 64


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
        raw = base64.b64decode(spec['data'])
        return np.frombuffer(raw, np.dtype(spec['dtype'])).reshape(spec['shape']).copy()
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
        f.write(hashlib.sha256(body).digest())
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
    if hashlib.sha256(data[:-32]).digest() != data[-32:]:
        raise PlanFileError(f'{path}: checksum mismatch (corrupted or truncated plan file)')
    return header_len


def _graph_from_header(h: dict, weights: dict) -> Graph:
    values = {name: Value(name, tuple(shape), dtype, layout)
              for name, shape, dtype, layout in h['values']}
    nodes = [Node(n['op'], n['name'], n['inputs'], n['outputs'],
                  {k: _decode_attr(a) for k, a in n['attrs'].items()}) for n in h['nodes']]
    return Graph(nodes=nodes, inputs=h['inputs'], outputs=h['outputs'], values=values,
                 weights=weights, name=h['name'], meta=h['meta'])


def load_plan(path):
    """Read a plan file; returns (graph, memory_plan dict, options dict)."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        raise PlanFileError(f'cannot read plan file {path}: {exc}') from exc
    header_len = _parse_prefix(data, path)
    start = _PREFIX.size
    try:
        header = json.loads(data[start:start + header_len].decode('utf-8'))
        blob_base = start + header_len
        weights = {}
        for entry in header['weights']:
            lo = blob_base + entry['offset']
            raw = data[lo:lo + entry['nbytes']]
            weights[entry['name']] = np.frombuffer(raw, np.dtype(entry['dtype'])).reshape(
                entry['shape'])
        graph = _graph_from_header(header['graph'], weights)
        return graph, header['memory_plan'], header['options']
    except (KeyError, ValueError, TypeError) as exc:
        raise PlanFileError(f'{path}: malformed plan header: {exc}') from exc
