"""Learning-rate schedules: the papers' recipes, and purity in the step (what exact resume needs)."""

import math

import pytest

from videoattn.config import load_config
from videoattn.engine.schedules import LRSchedule


def test_gta_recipe_warmup_then_steps_at_30_40_45():
    schedule = LRSchedule(base_lr=0.01, steps_per_epoch=10, epochs=50, schedule="step",
                          milestones=(30, 40, 45), gamma=0.1, warmup_epochs=2, warmup_start_factor=0.01)
    assert schedule.lr_at(0) == pytest.approx(0.0001)
    assert schedule.lr_at(10) == pytest.approx(0.01 * (0.01 + 0.99 * 0.5))  # half-way through warm-up
    assert schedule.lr_at(20) == pytest.approx(0.01)
    assert schedule.lr_at(299) == pytest.approx(0.01)
    assert schedule.lr_at(300) == pytest.approx(0.001)
    assert schedule.lr_at(400) == pytest.approx(0.0001)
    assert schedule.lr_at(450) == pytest.approx(0.00001)
    rising = [schedule.lr_at(s) for s in range(21)]
    assert rising == sorted(rising)


def test_rnl_every_20_epochs():
    schedule = LRSchedule(base_lr=0.01, steps_per_epoch=3, epochs=50, milestones=(20, 40))
    assert [schedule.lr_at(e * 3) for e in (0, 19, 20, 39, 40, 49)] == pytest.approx(
        [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])


def test_cosine_after_warmup_reaches_min_lr():
    schedule = LRSchedule(base_lr=0.01, steps_per_epoch=4, epochs=50, schedule="cosine", warmup_epochs=2,
                          min_lr=0.0)
    assert schedule.lr_at(8) == pytest.approx(0.01)
    middle = 8 + (200 - 8) // 2
    assert schedule.lr_at(middle) == pytest.approx(0.005, rel=1e-3)
    assert schedule.lr_at(199) < 1e-5
    values = [schedule.lr_at(s) for s in range(8, 200)]
    assert values == sorted(values, reverse=True)


def test_sgdr_restarts_and_growing_periods():
    schedule = LRSchedule(base_lr=0.01, steps_per_epoch=10, epochs=70, schedule="warm_restarts",
                          restart_period=10, restart_mult=2, min_lr=0.0)
    assert schedule.lr_at(0) == pytest.approx(0.01)
    assert schedule.lr_at(50) == pytest.approx(0.005)  # half of the first 10-epoch cycle
    assert schedule.lr_at(99) < 0.0001
    assert schedule.lr_at(100) == pytest.approx(0.01)  # restart
    assert schedule.lr_at(200) == pytest.approx(0.005)  # half of the second, 20-epoch cycle
    assert schedule.lr_at(300) == pytest.approx(0.01)


def test_schedule_is_a_pure_function_of_the_step():
    config = load_config(None, ["train.schedule=cosine", "train.warmup_epochs=1"])
    a = LRSchedule.from_config(config.train, steps_per_epoch=7)
    forward = [a.lr_at(s) for s in range(60)]
    backward = [a.lr_at(s) for s in reversed(range(60))][::-1]
    assert forward == backward
    assert all(math.isfinite(v) and v > 0 for v in forward)
    assert LRSchedule.from_config(config.train, steps_per_epoch=7).lr_at(33) == forward[33]
