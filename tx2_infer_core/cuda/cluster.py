"""Split-K in a thread-block cluster (sm_90, ``kernels/cluster.cuh``): whether a split layer's
splits sum in a cluster of its one launch or in a second launch over a workspace, and how many
splits a cluster holds. $TX2_INFER_SPLITK ('cluster', the default, or 'launch') chooses where
the GPU has clusters; below sm_90 it is always 'launch'."""
import os

from tx2_infer_core.errors import Tx2InferError

SPLITK_MODES = ('cluster', 'launch')
CLUSTER_MIN_ARCH = 90
CLUSTER_SIZES = (8, 4, 2)  # splits a cluster; 8 is the portable maximum
STATIC_SHARED_BYTES = 48 << 10


def env_choice(name, choices) -> str:
    """$``name``, one of ``choices`` (the first when unset; compared as text), or a
    ``Tx2InferError`` naming the variable."""
    value = os.environ.get(name, str(choices[0]))
    if value not in [str(c) for c in choices]:
        raise Tx2InferError(f"{name} must be one of {', '.join(map(str, choices))}, "
                            f'not {value!r}')
    return value


def splitk_mode(arch: int) -> str:
    """How a split-K layer sums its splits on ``arch``: 'cluster' (sm_90+, one launch) or
    'launch' (a second kernel); $TX2_INFER_SPLITK chooses where both are possible."""
    mode = env_choice('TX2_INFER_SPLITK', SPLITK_MODES)
    return mode if arch >= CLUSTER_MIN_ARCH else 'launch'


def cluster_fits(bm: int, bn: int) -> bool:
    """Whether a BM x BN FP32 tile (rows padded by 4) fits a CTA's static shared memory, as
    the cluster's reduction needs (every tile but 128x128)."""
    return bm * (bn + 4) * 4 <= STATIC_SHARED_BYTES


def cluster_size(splits: int) -> int:
    """The cluster of a layer the rule split ``splits`` ways: the largest of
    ``CLUSTER_SIZES`` not above it (one compiled module per size)."""
    return next(s for s in CLUSTER_SIZES if s <= splits)


def cluster_of(arch: int, bm: int, bn: int, splits: int) -> int:
    """The cluster size of a BM x BN layer split ``splits`` ways when its splits sum in a
    cluster on ``arch`` (``splitk_mode``, ``cluster_fits``), else 0 (a second launch)."""
    if splits > 1 and splitk_mode(arch) == 'cluster' and cluster_fits(bm, bn):
        return cluster_size(splits)
    return 0
