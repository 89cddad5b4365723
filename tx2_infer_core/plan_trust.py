"""A loaded plan's graph checked against what its ops compute, once per plan.

The header checks (``plan_check.py``) cannot see a value whose declared shape or dtype is not
what its op computes; ``verify_shapes`` runs the graph once (reference ops, within the
limits) to find it. That costs seconds on a robot's CPU, so a plan's pass is remembered in the
cache by the sha256 its file ends with (``verified_marker``), and plans the engine saves
itself are remembered at once.
"""
import logging

from tx2_infer_core.assets import cache_dir
from tx2_infer_core.errors import PlanFileError, Tx2InferError
from tx2_infer_core.plan_check import dtype_covers
from tx2_infer_core.shape_limits import infer_shapes_within

log = logging.getLogger('tx2_infer.engine')


def verified_marker(plan_path):
    """The cache file that says this plan's exact bytes passed ``verify_shapes`` before
    (named by the sha256 its last 32 bytes hold, checked by ``load_plan``), so a robot pays
    the check once per plan, not at every boot; None if the file cannot be read."""
    try:
        with open(plan_path, 'rb') as f:
            f.seek(-32, 2)
            digest = f.read(32).hex()
    except OSError:
        return None
    return cache_dir() / 'verified_plans' / digest


def remember(marker) -> None:
    """Create ``marker`` (best effort: a read-only cache only costs the check again)."""
    if marker is None:
        return
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError as exc:
        log.info('plan check not remembered: %s', exc)


def verify_shapes(graph, limits, source) -> None:
    """Refuse (``PlanFileError``) a loaded graph whose declared shapes or dtypes are not the
    ones its ops compute (one reference run, each value within ``limits``)."""
    check = graph.copy()
    try:
        infer_shapes_within(check, limits, str(source))
    except Tx2InferError as exc:
        raise PlanFileError(f'{source}: the graph does not run as declared: {exc}') from None
    for name, value in check.values.items():
        declared = graph.values.get(name)
        if declared is None or tuple(declared.shape) != tuple(value.shape) or not dtype_covers(
                declared.dtype, value.dtype):
            raise PlanFileError(f"{source}: value '{name}' is declared "
                                f'{declared and (tuple(declared.shape), declared.dtype)}, '
                                f'its op computes {(value.shape, value.dtype)}')
