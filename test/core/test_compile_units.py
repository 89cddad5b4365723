"""What a cold CUDA build compiles, without a GPU: each conv_mma module holds one tile, one
loader (16-byte rows or gather, -DCONV_MMA_GATHER) and only the activations its launches apply
(-DTX2_ACTS); the graph I/O conversions are a module of their own (kernels/io.cu)."""
import os
import threading
import time

import numpy as np
import pytest

import simt_h2_cases as cases
from tx2_infer_core.cuda import compile as cc
from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.launch import Launch
from tx2_infer_core.cuda.lower_conv import mma_module, with_act_masks
from tx2_infer_core.cuda.lower_ops import io_launch
from tx2_infer_core.cuda.lowering import lower_graph

LEAKY = params.ACT_CODES['LeakyRelu']


def conv_launch(module, activation) -> Launch:
    return Launch(module, 'conv_mma_64x64', (1, 1, 1), (128, 1, 1), params.CONV,
                  {'act': params.act_record(activation)}, 'conv')


def test_a_module_is_built_with_every_activation_its_launches_apply():
    rows, gather = mma_module(64, 64, False), mma_module(64, 64, True)
    pool = Launch('pool', 'pool2d', (1, 1, 1), (1, 1, 1), params.POOL)
    launches = [conv_launch(rows, 'Relu'), conv_launch(rows, ''), conv_launch(gather, 'SiLU'),
                conv_launch(rows, 'Sigmoid'), pool]
    modules = [k.module for k in with_act_masks(launches)]
    relu, silu, sigmoid = (params.ACT_CODES[a] for a in ('Relu', 'SiLU', 'Sigmoid'))
    both = (1 << relu) | (1 << sigmoid)
    rows_module, gather_module = f'{rows}@TX2_ACTS={both}', f'{gather}@TX2_ACTS={1 << silu}'
    assert modules == [rows_module, rows_module, gather_module, rows_module, 'pool']


def test_yolov3_tiny_modules_match_their_launches():
    """The 3-channel stem alone on a gather module; every launch's activation is in its
    module's mask and its kernel in its module's loader and tile."""
    graph, _ = cases.model_env('yolov3-tiny')
    launches = lower_graph(graph, 90, 'tc').launches
    mma = [k for k in launches if k.module.startswith('conv_mma@')]
    assert len(mma) == 13  # 10 split layers are clusters of one launch (sm_90)
    for k in mma:
        _, defines = cc.split_module(k.module)
        kind = int(k.fields['act']['kind'])
        assert kind == 0 or int(defines['TX2_ACTS']) >> kind & 1, (k.node, k.module)
        gather = k.kernel.startswith('conv_mma_gather')
        assert defines['CONV_MMA_GATHER'] == str(int(gather)), (k.node, k.module)
        if k.kernel != 'conv_splitk_reduce':
            bm, bn = k.kernel.removesuffix('_cl').rsplit('_', 1)[1].split('x')
            assert int(defines['CONV_MMA_TILE']) == int(bm) * 1000 + int(bn)
        if k.kernel.endswith('_cl'):  # the cluster is the splits along z
            assert int(defines['CONV_MMA_CLUSTER']) == k.grid[2] == k.fields['splits'] > 1
    assert {k.node for k in mma if 'GATHER=1' in k.module} == {'conv_0'}
    assert {int(k.fields['act']['kind']) for k in mma} == {LEAKY, 0}


def test_io_conversions_are_their_own_module():
    graph, _ = cases.model_env('yolov3-tiny')
    slot = lower_graph(graph, 90).slots[graph.inputs[0]]
    assert io_launch('to_arena_f16', None, None, slot).module == 'io'


def mma_ptx(gather, acts) -> str:
    defines = {'CONV_MMA_TILE': 64064, 'CONV_MMA_GATHER': gather, 'TX2_ACTS': acts}
    return cc.nvrtc_compile('conv_mma', 87, defines, ptx=True).decode()


@pytest.mark.skipif(not cc.nvrtc_available(), reason='nvidia-cuda-nvrtc-cu12 not installed')
def test_defines_select_the_loader_and_the_activations():
    """-DCONV_MMA_GATHER picks one kernel of the tile (the split-K reduction is in both);
    -DTX2_ACTS leaves out the other activations: no exponential without Silu."""
    leaky = mma_ptx(0, 1 << LEAKY)
    assert '.entry conv_mma_64x64(' in leaky and '.entry conv_splitk_reduce(' in leaky
    assert 'conv_mma_gather_64x64' not in leaky
    assert 'ex2.approx' not in leaky
    silu = mma_ptx(1, 1 << params.ACT_CODES['SiLU'])
    assert '.entry conv_mma_gather_64x64(' in silu and '.entry conv_mma_64x64(' not in silu
    assert 'ex2.approx' in silu


CLUSTER_MODULES = [  # (file, defines, kernels built, kernels not built)
    ('conv_mma', {'CONV_MMA_TILE': 64064, 'CONV_MMA_GATHER': 0, 'CONV_MMA_CLUSTER': 4},
     ['conv_mma_64x64_cl'], ['conv_mma_64x64', 'conv_mma_gather_64x64_cl']),
    ('conv_mma', {'CONV_MMA_TILE': 64064, 'CONV_MMA_GATHER': 1, 'CONV_MMA_CLUSTER': 4},
     ['conv_mma_gather_64x64_cl'], ['conv_mma_64x64_cl']),
    ('conv_int8_mma', {'CONV_I8_MMA_CLUSTER': 4},
     ['conv_i8_mma_64x64_cl', 'conv_i8_mma_128x64_cl', 'conv_i8_mma_64x128_cl'],
     ['conv_i8_mma_64x64', 'conv_i8_mma_128x128_cl'])]


@pytest.mark.skipif(not cc.nvrtc_available(), reason='nvidia-cuda-nvrtc-cu12 not installed')
@pytest.mark.parametrize('name,defines,built,absent', CLUSTER_MODULES,
                         ids=['fp16_rows', 'fp16_gather', 'int8'])
def test_cluster_modules_sum_through_distributed_shared_memory(name, defines, built, absent):
    """-D..._CLUSTER=4 on sm_90: only the ``_cl`` kernels (int8: of the tiles whose int32 tile
    fits), each declared a cluster of 4 along z, reading its peers' tiles (mapa +
    ld.shared::cluster) between cluster barriers."""
    ptx = cc.nvrtc_compile(name, 90, dict(defines, TX2_ACTS=1 << LEAKY), ptx=True).decode()
    assert all(f'.entry {k}(' in ptx for k in built)
    assert not any(f'.entry {k}(' in ptx for k in absent)
    assert ptx.count('.reqnctapercluster 1, 1, 4') == len(built)
    assert 'mapa.shared::cluster' in ptx and 'ld.shared::cluster.v2.u32' in ptx
    assert ptx.count('barrier.cluster.wait') >= 2 * len(built)


def test_cache_key_holds_the_defines():
    keys = {cc.cache_key('conv_mma', 90, cc.split_module(m)[1], 'nvcc') for m in (
        'conv_mma@CONV_MMA_TILE=64064@CONV_MMA_GATHER=0@TX2_ACTS=2',
        'conv_mma@CONV_MMA_TILE=64064@CONV_MMA_GATHER=1@TX2_ACTS=2',
        'conv_mma@CONV_MMA_TILE=64064@CONV_MMA_GATHER=0@TX2_ACTS=16')}
    assert len(keys) == 3
    assert np.all([len(k) == 20 for k in keys])


def test_compile_workers_follow_the_environment(monkeypatch):
    monkeypatch.setenv('TX2_INFER_COMPILE_WORKERS', '4')
    assert cc.compile_workers() == 4
    for bad in ('0', 'four', ''):
        monkeypatch.setenv('TX2_INFER_COMPILE_WORKERS', bad)
        assert cc.compile_workers() == (os.cpu_count() or 1)


def test_compile_all_runs_at_most_that_many_compilers(monkeypatch):
    running, peak, lock = [0], [0], threading.Lock()

    def fake_compile(name, arch, defines=None, compiler=None):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return name.encode()

    monkeypatch.setattr(cc, 'compile_cached', fake_compile)
    monkeypatch.setenv('TX2_INFER_COMPILE_WORKERS', '2')
    names = [f'm{i}' for i in range(8)]
    assert cc.compile_all(names, 90) == {n: n.encode() for n in names}
    assert peak[0] == 2
