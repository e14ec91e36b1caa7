"""examples/cloning_digits_study.py runs end to end on a tiny budget and reports what it promises."""

import math

import pytest
from helpers import load_script


@pytest.mark.parametrize("options", [["--student", "vit", "--pool", "token"],
                                     ["--student", "cnn", "--teacher", "random"]])
def test_study_prints_the_errors_and_the_distance_to_the_teacher(options, capsys):
    for package in ("timm", "mlxtend", "escnn"):
        pytest.importorskip(package)
    study = load_script("cloning_digits_study.py")
    result = study.main(["--steps", "8", "--teacher-steps", "2", "--dim", "16", "--depth", "1", "--batch-size", "8",
                         "--warmup", "2", *options])
    assert '"E_after_cloning"' in capsys.readouterr().out
    for key in ("E_before_cloning", "E_after_cloning", "C_before_cloning", "C_after_cloning", "teacher_spread",
                "distance_to_teacher_test", "distance_to_teacher_cloning_digits"):
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert 0.0 <= result["argmax_agreement_test"] <= 1.0
    assert [step for step, _ in result["E_during_cloning"]] == list(range(1, 9))
