"""Checkpoints: atomic save, safe load (weights_only), clear errors, RNG round trip."""

import random

import numpy as np
import pytest
import torch

from videoattn.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model_weights,
    restore_rng_state,
    save_checkpoint,
)
from videoattn.errors import CheckpointError


class Payload:
    """Not a tensor or plain container: a weights_only load must refuse it."""


def test_roundtrip_with_optimizer_and_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    rng = capture_rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng,
                     "position": {"epoch": 1}}, tmp_path / "last.pt")
    state = load_checkpoint(tmp_path / "last.pt")
    restore_rng_state(state["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    other = torch.nn.Linear(3, 2)
    load_model_weights(other, state)
    assert torch.equal(other.weight, model.weight)
    fresh_optimizer = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    fresh_optimizer.load_state_dict(state["optimizer"])
    assert state["position"] == {"epoch": 1}
    assert not list(tmp_path.glob(".*.tmp"))


def test_unsafe_pickle_is_refused(tmp_path):
    torch.save({"model": {}, "extra": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refused.*Payload"):
        load_checkpoint(tmp_path / "evil.pt")


def test_torn_and_missing_files(tmp_path):
    save_checkpoint({"model": {"w": torch.ones(100)}}, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "torn.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "torn.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_bare_and_ddp_state_dicts_are_accepted(tmp_path):
    model = torch.nn.Linear(2, 2)
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "ddp.pt")
    state = load_checkpoint(tmp_path / "ddp.pt")
    load_model_weights(torch.nn.Linear(2, 2), state)


def test_mismatch_is_explained():
    state = {"model": torch.nn.Linear(2, 3).state_dict()}
    with pytest.raises(CheckpointError, match=r"other shapes.*weight: \(3, 2\) vs model \(4, 2\)"):
        load_model_weights(torch.nn.Linear(2, 4), state)


def test_save_requires_model_and_failed_save_leaves_old_file(tmp_path):
    with pytest.raises(ValueError):
        save_checkpoint({"optimizer": {}}, tmp_path / "x.pt")
    save_checkpoint({"model": {"w": torch.zeros(2)}}, tmp_path / "last.pt")
    with pytest.raises(Exception):  # noqa: B017 - any pickling error
        save_checkpoint({"model": {"w": torch.ones(2)}, "bad": lambda: None}, tmp_path / "last.pt")
    assert torch.equal(load_checkpoint(tmp_path / "last.pt")["model"]["w"], torch.zeros(2))
    assert not list(tmp_path.glob(".*.tmp"))
