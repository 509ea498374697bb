"""bf16 autocast on a CPU without native bf16 is warned about (it is ~30x slower than fp32 there)."""

import torch


def test_bf16_warning_only_where_bf16_is_slow(monkeypatch):
    from videoattn.engine import precision

    cpu = torch.device("cpu")
    assert precision.bf16_warning("fp32", cpu) is None
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.bf16_warning("bf16", cpu) is None
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    message = precision.bf16_warning("bf16", cpu)
    assert message and "train.precision 'bf16'" in message and "fp32" in message
