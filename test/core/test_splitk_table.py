"""Split-K by measured cost (cuda/splitk_table.py): on sm_90 a layer splits only where the
nearest layer measured on the H200 ran faster split; elsewhere the rule of mma_config holds."""
from tx2_infer_core.cuda import splitk_table
from tx2_infer_core.cuda.lower_conv import mma_config

H200_SMS = 132


def test_the_measured_two_channel_heads_run_in_one_pass():
    for m in (400, 1600, 6400):  # yolov8's 2-channel conv at three scales
        assert not splitk_table.split_pays(90, m, 2, 4)
        assert mma_config(m, 2, 4, 1, H200_SMS)[3] == 2          # the rule alone splits
        assert mma_config(m, 2, 4, 1, H200_SMS, arch=90)[3] == 1  # measured: one pass


def test_layers_where_splitting_paid_still_split():
    for m, n, ktiles in ((49, 512, 144), (784, 128, 36), (1600, 128, 36), (196, 1024, 8)):
        assert splitk_table.split_pays(90, m, n, ktiles)
        assert mma_config(m, n, ktiles, 1, H200_SMS, arch=90) == \
            mma_config(m, n, ktiles, 1, H200_SMS)
        assert mma_config(m, n, ktiles, 1, H200_SMS)[3] > 1


def test_an_arch_without_a_table_keeps_the_rule():
    assert splitk_table.split_pays(87, 1600, 2, 4)
    assert mma_config(1600, 2, 4, 1, 16, arch=87) == mma_config(1600, 2, 4, 1, 16)


def test_every_row_is_well_formed():
    for arch, rows in splitk_table.MEASURED.items():
        assert rows and all(len(r) == 5 and r[4] in (0, 1) and min(r[:4]) >= 1 for r in rows)
