"""Each schedule's shape at its boundaries, as a pure function of progress and step."""

import pytest

from slovo.config import ScheduleConfig
from slovo.schedules import lr_factor


def S(**kw):
    return ScheduleConfig(**{"warmup": 0.0, **kw})


def test_constant_is_flat_after_warmup():
    s = S(name="constant", warmup=0.1)
    assert lr_factor(s, 0.0, 0) == 0.0
    assert lr_factor(s, 0.05, 5) == pytest.approx(0.5)
    assert lr_factor(s, 0.1, 10) == 1.0
    assert lr_factor(s, 0.99, 99) == 1.0


def test_warmup_in_steps_ramps_by_step_not_progress():
    s = S(name="constant", warmup=9)
    assert lr_factor(s, 0.9, 0) == pytest.approx(0.1)
    assert lr_factor(s, 0.0, 9) == 1.0


def test_step_drop_drops_at_steps_and_progress_points():
    s = S(name="step_drop", drop_steps=[100], drop_at=[0.8], drop_factor=0.1)
    assert lr_factor(s, 0.5, 99) == 1.0
    assert lr_factor(s, 0.5, 100) == pytest.approx(0.1)
    assert lr_factor(s, 0.8, 150) == pytest.approx(0.01)


def test_triangular_cycles_between_floor_and_peak():
    s = S(name="triangular", cycle=0.2, min_lr_ratio=0.1)
    assert lr_factor(s, 0.0, 0) == pytest.approx(0.1)
    assert lr_factor(s, 0.1, 0) == pytest.approx(1.0)
    assert lr_factor(s, 0.2, 0) == pytest.approx(0.1)
    assert lr_factor(s, 0.3, 0) == pytest.approx(1.0)


def test_cosine_runs_from_peak_to_floor_after_warmup():
    s = S(name="cosine", warmup=0.1, min_lr_ratio=0.1)
    assert lr_factor(s, 0.1, 10) == pytest.approx(1.0)
    assert lr_factor(s, 0.55, 50) == pytest.approx(0.55)
    assert lr_factor(s, 1.0, 100) == pytest.approx(0.1)


@pytest.mark.parametrize("shape, mid", [("linear", 0.5), ("1-sqrt", 1 - 0.5**0.5), ("cosine", 0.5)])
def test_wsd_is_stable_then_decays_to_floor_at_the_deadline(shape, mid):
    s = S(name="wsd", decay_fraction=0.2, decay_shape=shape, min_lr_ratio=0.0)
    assert lr_factor(s, 0.5, 0) == 1.0
    assert lr_factor(s, 0.8, 0) == pytest.approx(1.0)
    assert lr_factor(s, 0.9, 0) == pytest.approx(mid)
    assert lr_factor(s, 1.0, 0) == pytest.approx(0.0)


def test_wsd_floor():
    s = S(name="wsd", decay_fraction=0.5, min_lr_ratio=0.2)
    assert lr_factor(s, 1.0, 0) == pytest.approx(0.2)
    assert lr_factor(s, 0.75, 0) == pytest.approx(0.6)
