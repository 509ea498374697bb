"""The engine's optimizer: fused SGD on CPU, the same update as the for-loop implementation."""

import torch

from videoattn.config import TrainConfig
from videoattn.engine.trainer import build_optimizer


def test_fused_sgd_matches_the_for_loop_update():
    config = TrainConfig(lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)
    torch.manual_seed(0)
    start = [torch.randn(5, 3), torch.randn(7)]
    fused = [p.clone().requires_grad_(True) for p in start]
    plain = [p.clone().requires_grad_(True) for p in start]
    optimizer = build_optimizer(fused, config)
    assert optimizer.param_groups[0]["fused"] is True
    reference = torch.optim.SGD(plain, lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True, foreach=False)
    for _ in range(3):
        grads = [torch.randn_like(p) for p in start]
        for params, opt in ((fused, optimizer), (plain, reference)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
