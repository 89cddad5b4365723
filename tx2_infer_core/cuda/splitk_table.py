"""Split-K measured per layer on a real GPU, kept here so the lowering decides by measured cost
(issue 12): rows of (M pixels, N channels, k tiles, splits the rule chose, split paid 1/0), from
``bench/bench_splitk.py`` (each model built with and without split-K, each split conv timed both
ways from graph event nodes, a second launch charged 1.5 us). A layer splits when the nearest
measured layer (log-scale distance in M, N and k tiles) paid; an arch with no table keeps the
rule of ``lower_conv.mma_config``.

sm_90: NVIDIA H200, ``bench/results/splitk_h200.json`` (ResNet-50, YOLOv5s, BERT-tiny, YOLOv8,
open_nsfw, YOLOv3-tiny): splitting paid on every split layer but the 2-channel heads.
"""
import math

MEASURED = {
    90: (
        (49, 256, 16, 8, 1), (49, 256, 32, 16, 1), (49, 256, 72, 15, 1), (49, 512, 64, 16, 1),
        (49, 512, 144, 16, 1), (49, 1024, 8, 4, 1), (49, 1024, 16, 8, 1), (49, 2048, 16, 8, 1),
        (49, 2048, 32, 8, 1), (169, 128, 8, 4, 1), (169, 255, 16, 8, 1), (169, 256, 32, 16, 1),
        (169, 512, 72, 11, 1), (169, 1024, 144, 5, 1), (196, 128, 8, 4, 1), (196, 128, 16, 8, 1),
        (196, 128, 36, 12, 1), (196, 256, 32, 16, 1), (196, 256, 72, 15, 1), (196, 512, 4, 2, 1),
        (196, 512, 8, 4, 1), (196, 512, 32, 8, 1), (196, 1024, 8, 4, 1), (196, 1024, 16, 4, 1),
        (400, 2, 4, 2, 0), (400, 64, 18, 9, 1), (400, 64, 144, 16, 1), (400, 128, 36, 12, 1),
        (400, 128, 144, 16, 1), (400, 255, 16, 8, 1), (400, 256, 8, 4, 1), (400, 256, 16, 8, 1),
        (400, 256, 72, 9, 1), (400, 512, 16, 4, 1), (400, 512, 24, 4, 1), (400, 512, 32, 4, 1),
        (400, 512, 72, 4, 1), (676, 255, 8, 4, 1), (676, 256, 36, 6, 1), (676, 256, 108, 6, 1),
        (784, 64, 4, 2, 1), (784, 64, 8, 4, 1), (784, 64, 18, 9, 1), (784, 128, 16, 8, 1),
        (784, 128, 36, 9, 1), (784, 256, 4, 2, 1), (784, 256, 16, 4, 1), (784, 512, 4, 2, 1),
        (784, 512, 8, 2, 1), (1600, 2, 4, 2, 0), (1600, 64, 18, 9, 1), (1600, 64, 72, 9, 1),
        (1600, 128, 4, 2, 1), (1600, 128, 8, 4, 1), (1600, 128, 16, 4, 1), (1600, 128, 36, 5, 1),
        (1600, 128, 72, 5, 1), (1600, 255, 8, 2, 1), (1600, 256, 8, 2, 1), (1600, 256, 12, 2, 1),
        (1600, 256, 16, 2, 1), (1600, 256, 24, 2, 1), (1600, 256, 36, 2, 1), (2704, 128, 18, 3, 1),
        (3136, 32, 4, 2, 1), (3136, 32, 9, 3, 1), (3136, 64, 8, 4, 1), (3136, 64, 18, 5, 1),
        (3136, 128, 8, 2, 1), (6400, 2, 4, 2, 0), (6400, 64, 4, 2, 1), (6400, 64, 8, 2, 1),
        (6400, 64, 18, 2, 1), (6400, 64, 36, 2, 1),
    ),
}


def split_pays(arch: int, m: int, n: int, ktiles: int) -> bool:
    """Whether splitting K paid on the measured layer nearest to this one (True when
    ``arch`` has no table)."""
    rows = MEASURED.get(arch)
    if not rows:
        return True

    def distance(row):
        return sum(math.log2(a / b) ** 2 for a, b in zip(row[:3], (m, n, ktiles)))
    return bool(min(rows, key=distance)[4])
