"""Property: checkpoint and weight files (truncated, bytes changed, wrong keys, wrong shapes,
non-tensor pickles, another model's checkpoint) load into a model or are refused with a
CheckpointError naming the file (never another exception, never a silently wrong model)."""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.reliability._props import own_error_or_success
from videoattn.backbones.pretrained import load_pretrained, read_state_dict
from videoattn.engine.checkpoint import load_checkpoint, load_model_weights, save_checkpoint


class Tiny(torch.nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, width, 3)
        self.bn1 = torch.nn.BatchNorm2d(width)
        self.fc = torch.nn.Linear(width, 2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Bytes of a checkpoint saved by videoattn and of a plain torch.save'd state dict."""
    folder = tmp_path_factory.mktemp("ckpt")
    save_checkpoint({"model": Tiny().state_dict(), "position": {"epoch": 1}}, folder / "good.pt")
    buffer = io.BytesIO()
    torch.save(Tiny().state_dict(), buffer)
    return (folder / "good.pt").read_bytes(), buffer.getvalue()


tensors = st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype),
                    st.lists(st.integers(0, 4), max_size=4).map(tuple),
                    st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool, torch.complex64]))
keys = st.sampled_from(["conv1.weight", "conv1.bias", "bn1.weight", "bn1.running_mean", "fc.weight", "fc.bias",
                        "module.fc.bias", "model", "state_dict", "other.weight", ""]) | st.text(max_size=6)
leaves = tensors | st.none() | st.integers() | st.floats() | st.text(max_size=5)
structures = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(keys | st.integers(), inner, max_size=5), max_leaves=10)


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@st.composite
def checkpoint_files(draw, saved):
    good, plain = saved
    kind = draw(st.sampled_from(["truncated", "changed", "structure", "pickle", "other_model", "bytes"]))
    if kind == "truncated":
        data = draw(st.sampled_from([good, plain]))
        return data[:draw(st.integers(0, len(data) - 1))]
    if kind == "changed":
        data = bytearray(draw(st.sampled_from([good, plain])))
        start = draw(st.integers(0, len(data) - 1))
        patch = draw(st.binary(min_size=1, max_size=32))
        data[start:start + len(patch)] = patch
        return bytes(data[:len(good) if data is good else len(data)])
    if kind == "structure":
        return _torch_bytes(draw(structures))
    if kind == "pickle":  # objects a weights-only load must refuse, pickled by torch.save or plain pickle
        obj = draw(st.sampled_from([OrderedDict(a=1), {"model": {"fc.weight": torch.nn.Linear(2, 2)}},
                                    {"model": Tiny()}, {"model": {"x": slice(1, 2)}}, set([1, 2]), Tiny()]))
        return _torch_bytes(obj) if draw(st.booleans()) else pickle.dumps(obj)
    if kind == "other_model":
        width = draw(st.integers(1, 5))
        prefix = draw(st.sampled_from(["", "module.", "backbone."]))
        return _torch_bytes({"model": {prefix + k: v for k, v in Tiny(width).state_dict().items()}})
    return draw(st.binary(max_size=64))


# Plain pickles of other protocols are among the fuzzed files on purpose; torch warns about them.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@given(data=st.data())
def test_checkpoint_files(data, saved, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "last.pt"
    path.write_bytes(data.draw(checkpoint_files(saved)))
    model = Tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def load():
        state = load_checkpoint(path)
        load_model_weights(model, state, source=f"checkpoint {path}")
        return state

    state = own_error_or_success("checkpoint", load, (str(path),))
    if state is None:  # refused: the model is untouched
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())

    fresh = Tiny()
    report = own_error_or_success("pretrained", lambda: (read_state_dict(path), load_pretrained(fresh, path))[1],
                                  (str(path),))
    if report is not None:
        assert report.loaded
