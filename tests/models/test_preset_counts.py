"""Parameter and MAC counts of every preset, recorded before the backbone protocol (insertion sites)
was introduced: refactoring how blocks are placed must not change any model. The papers' printed
numbers are checked in tests/analysis/test_complexity.py; these are our exact counts
(224 x 224, 8 frames, each preset's default classes)."""

import pytest

from videoattn.analysis.complexity import profile_model

# preset: (parameters, fvcore MACs, thop MACs)
COUNTS = {
    "c2d50": (24_327_632, 19_495_649_280, 19_626_717_184),
    "i3d50": (28_043_472, 28_410_118_144, 28_541_186_048),
    "r2d18": (11_265_774, 14_509_203_456, 14_549_147_648),
    "r2d18_dnl": (11_432_494, 15_013_572_608, 14_969_221_120),
    "r2d18_gta": (11_452_494, 15_048_601_600, 14_978_955_264),
    "r2d18_nl": (11_431_342, 16_336_412_672, 14_965_608_448),
    "r2d18_sa": (11_349_134, 14_803_234_816, 14_759_184_384),
    "r2d18_ta": (11_349_134, 14_719_541_248, 14_759_184_384),
    "r2d18_tape": (11_435_566, 15_013_572_608, 14_969_221_120),
    "r2d50": (23_864_558, 32_699_940_864, 32_878_583_808),
    "r2d50_dnl": (31_235_310, 49_933_991_936, 49_404_551_168),
    "r2d50_gta": (31_402_222, 50_898_288_640, 49_692_360_704),
    "r2d50_nl": (31_223_022, 61_100_359_680, 49_370_832_896),
    "r2d50_sa": (27_549_934, 41_668_198_400, 41_141_567_488),
    "r2d50_ta": (27_549_934, 40_965_734_400, 41_141_567_488),
    "r2d50_tape": (31_268_078, 49_933_991_936, 49_404_551_168),
    "resnet101": (44_549_160, 7_801_405_440, 7_833_971_712),
    "resnet152": (60_192_808, 11_513_626_624, 11_558_837_248),
    "resnet18": (11_689_512, 1_814_073_344, 1_819_066_368),
    "resnet34": (21_797_672, 3_663_761_408, 3_671_263_232),
    "resnet50": (25_557_032, 4_089_184_256, 4_111_514_624),
    "tsm50": (24_327_632, 32_703_643_648, 32_882_286_592),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_counts_unchanged(name):
    params, fvcore, thop = COUNTS[name]
    counted = profile_model(name, convention="fvcore")
    assert (counted.params, counted.macs) == (params, fvcore)
    assert profile_model(name, convention="thop").macs == thop
