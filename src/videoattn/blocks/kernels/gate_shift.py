"""GSM's gate-and-shift as one fused op: ``gate_shift(x, logits, past_first)``.

``x`` ``(N, C, T, H, W)``, ``logits`` ``(N, 2, T, H, W)`` (the gate convolution's output plus its bias,
before ``tanh``). With ``g_k = tanh(logits[:, k])`` and ``Y_k = g_k . X_k`` for the two channel halves::

    Z_k = X_k - Y_k + shift_k(Y_k)

``shift`` moves the first half one frame forward in time (frame t receives frame t-1's ``Y``, frame 0
zeros) and the second backward when ``past_first``, the reverse otherwise.

The Triton forward reads ``x`` and ``logits`` once and writes ``Z``: the ``tanh``, the gated tensor,
the residual and both shifted copies (four full-size tensors on the PyTorch path) never exist. Its
backward recomputes ``tanh`` and gives ``dL/dX`` and ``dL/dlogits`` (the channel sum of
``X . dL/dY`` times ``1 - g^2``) in one pass over ``x`` and the incoming gradient. Any strides (the
backbones pass channels_last_3d); accumulation in float32 (float64 for float64 inputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._attention import capturing_graph, standard_layout
from . import acc_dtype, launcher
from ._common import fresh_like, next_power_of_2, tl, triton

# ---------------------------------------------------------------------------------------- PyTorch path


class GatedShift(torch.autograd.Function):
    """``Z = X - Y + shift(Y)`` with ``Y_k = g_k . X_k`` for the two channel halves, in one pass.

    ``gate`` is ``(N, 2, T, H, W)``; with ``past_first`` the first half receives frame t-1's ``Y``
    (``shift_fw``) and the second frame t+1's (``shift_bw``), else the reverse. The backward is
    written out (``dL/dY = -G + G`` shifted the other way, ``dL/dX = G + g . dL/dY``,
    ``dL/dg = sum_c X . dL/dY``) so that neither pass allocates more than one full-size buffer per
    result: autograd through slices would materialise a zero-filled copy of the tensor per slice.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, gate: torch.Tensor, past_first: bool) -> torch.Tensor:
        halves = x.unflatten(1, (2, x.shape[1] // 2))  # a view, whatever x's strides
        gated = halves * gate.unsqueeze(2)
        out = halves - gated
        past, future = (0, 1) if past_first else (1, 0)
        out[:, past, :, 1:] += gated[:, past, :, :-1]
        out[:, future, :, :-1] += gated[:, future, :, 1:]
        ctx.save_for_backward(x, gate)
        ctx.past_first = past_first
        return out.flatten(1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, gate = ctx.saved_tensors
        grad_halves = grad.unflatten(1, (2, x.shape[1] // 2))
        past, future = (0, 1) if ctx.past_first else (1, 0)
        grad_gated = -grad_halves
        grad_gated[:, past, :, :-1] += grad_halves[:, past, :, 1:]
        grad_gated[:, future, :, 1:] += grad_halves[:, future, :, :-1]
        grad_x = grad_gate = None
        if ctx.needs_input_grad[0]:
            # at batch 1 the element-wise result of a channels_last_3d gradient comes out with batch stride
            # C, not C*T*H*W: a layout PyTorch's BN backward mishandles (_attention.standard_layout)
            grad_x = standard_layout((grad_halves + grad_gated * gate.unsqueeze(2)).flatten(1, 2))
        if ctx.needs_input_grad[1]:
            grad_gate = (grad_gated * x.unflatten(1, (2, x.shape[1] // 2))).sum(2)
        return grad_x, grad_gate, None


def gated_shift_traceable(x: torch.Tensor, gate: torch.Tensor, past_first: bool) -> torch.Tensor:
    """:class:`GatedShift`'s forward without in-place writes (zero-padded shifts by concatenation)."""
    halves = x.unflatten(1, (2, x.shape[1] // 2))
    gated = halves * gate.unsqueeze(2)
    first, second = gated[:, 0], gated[:, 1]  # (N, C/2, T, H, W)
    from_past = [F.pad(g, (0, 0, 0, 0, 1, 0))[:, :, :-1] for g in (first, second)]  # frame t gets t-1
    from_future = [F.pad(g, (0, 0, 0, 0, 0, 1))[:, :, 1:] for g in (first, second)]  # frame t gets t+1
    shifted = (torch.stack((from_past[0], from_future[1]), 1) if past_first
               else torch.stack((from_future[0], from_past[1]), 1))
    return (halves - gated + shifted).flatten(1, 2)


def gate_shift_torch(x: torch.Tensor, logits: torch.Tensor, past_first: bool) -> torch.Tensor:
    """The PyTorch path: ``tanh`` then :class:`GatedShift` (its out-of-place form while a graph is
    captured: tracers record in-place slice writes wrongly)."""
    fn = gated_shift_traceable if capturing_graph() else GatedShift.apply
    return fn(x, torch.tanh(logits), past_first)


# ----------------------------------------------------------------------------------------- Triton path

if triton is not None:

    @triton.jit
    def _site(T, HW, W, BLOCK_HW: tl.constexpr, PAST_FIRST: tl.constexpr, SOURCE: tl.constexpr):
        """This program's clip ``n``, channel half ``k``, frame ``t`` and ``BLOCK_HW`` positions (``hw``,
        in range ``hw_ok``, row ``h``, column ``w``), and the neighbouring frame of the shift: the one
        frame ``t`` of half ``k`` takes from (``SOURCE``: forward) or gives to (backward), whether it
        exists, and itself or ``t`` when it does not (a safe address)."""
        pid = tl.program_id(0)
        k = tl.program_id(1)
        n = (pid // T).to(tl.int64)
        t = pid % T
        hw = tl.program_id(2) * BLOCK_HW + tl.arange(0, BLOCK_HW)
        if PAST_FIRST:
            from_past = k == 0
        else:
            from_past = k == 1
        if SOURCE:
            other = tl.where(from_past, t - 1, t + 1)
        else:
            other = tl.where(from_past, t + 1, t - 1)
        ok = (other >= 0) & (other < T)
        return n, k, t, hw, hw < HW, hw // W, hw % W, ok, tl.where(ok, other, t)

    @triton.jit
    def _gate_shift_fwd(x_ptr, logit_ptr, out_ptr, HALF, T, HW, W,
                        sxn, sxc, sxt, sxh, sxw, sln, slk, slt, slh, slw,
                        son, soc, sot, soh, sow, PAST_FIRST: tl.constexpr, ACC: tl.constexpr,
                        BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
        # this half receives frame s: t-1 (the past) or t+1
        n, k, t, hw, hw_ok, h, w, s_ok, s_safe = _site(T, HW, W, BLOCK_HW, PAST_FIRST, True)
        lbase = logit_ptr + n * sln + k * slk + h * slh + w * slw
        z = tl.load(lbase + t * slt, mask=hw_ok, other=0.0).to(ACC)
        g_t = 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)  # tanh
        zs = tl.load(lbase + s_safe * slt, mask=(hw_ok & s_ok) != 0, other=0.0).to(ACC)
        g_s = tl.where(s_ok, 1.0 - 2.0 / (tl.exp(2.0 * zs) + 1.0), 0.0)
        keep = 1.0 - g_t
        sp = h * sxh + w * sxw
        op = h * soh + w * sow
        for c0 in range(0, HALF, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            ch = k * HALF + c
            mask = (c < HALF)[:, None] & hw_ok[None, :]
            xrow = x_ptr + n * sxn + ch[:, None].to(tl.int64) * sxc + sp[None, :]
            x_t = tl.load(xrow + t * sxt, mask=mask, other=0.0).to(ACC)
            x_s = tl.load(xrow + s_safe * sxt, mask=(mask & s_ok) != 0, other=0.0).to(ACC)
            out = x_t * keep[None, :] + x_s * g_s[None, :]
            optr = out_ptr + n * son + ch[:, None].to(tl.int64) * soc + t * sot + op[None, :]
            tl.store(optr, out.to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _gate_shift_bwd(x_ptr, logit_ptr, g_ptr, gx_ptr, glogit_ptr, HALF, T, HW, W,
                        sxn, sxc, sxt, sxh, sxw, sln, slk, slt, slh, slw,
                        sgn, sgc, sgt, sgh, sgw, gxn, gxc, gxt, gxh, gxw,
                        PAST_FIRST: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr,
                        BLOCK_HW: tl.constexpr):
        # Y[t] of this half went to frame d: t+1 when the half receives the past, else t-1
        n, k, t, hw, hw_ok, h, w, d_ok, d_safe = _site(T, HW, W, BLOCK_HW, PAST_FIRST, False)
        lptr = logit_ptr + n * sln + k * slk + t * slt + h * slh + w * slw
        z = tl.load(lptr, mask=hw_ok, other=0.0).to(ACC)
        g_t = 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)
        grad_gate = tl.zeros([BLOCK_HW], dtype=ACC)
        sp = h * sxh + w * sxw
        gp = h * sgh + w * sgw
        xp = h * gxh + w * gxw
        for c0 in range(0, HALF, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            ch = (k * HALF + c)[:, None].to(tl.int64)
            mask = (c < HALF)[:, None] & hw_ok[None, :]
            grow = g_ptr + n * sgn + ch * sgc + gp[None, :]
            g_here = tl.load(grow + t * sgt, mask=mask, other=0.0).to(ACC)
            g_there = tl.load(grow + d_safe * sgt, mask=(mask & d_ok) != 0, other=0.0).to(ACC)
            grad_y = g_there - g_here  # dL/dY[t] = -G[t] + G[d]
            x_t = tl.load(x_ptr + n * sxn + ch * sxc + t * sxt + sp[None, :], mask=mask, other=0.0).to(ACC)
            grad_gate += tl.sum(x_t * grad_y, axis=0)
            grad_x = g_here + g_t[None, :] * grad_y
            tl.store(gx_ptr + n * gxn + ch * gxc + t * gxt + xp[None, :], grad_x.to(gx_ptr.dtype.element_ty),
                     mask=mask)
        grad_logit = grad_gate * (1.0 - g_t * g_t)
        optr = glogit_ptr + ((n * 2 + k) * T + t) * HW + hw
        tl.store(optr, grad_logit.to(glogit_ptr.dtype.element_ty), mask=hw_ok)

    _FWD = launcher(_gate_shift_fwd)
    _BWD = launcher(_gate_shift_bwd)


def _blocks(half: int, hw: int, device: torch.device) -> tuple[int, int]:
    block_hw = min(128 if device.type != "cpu" else 64, next_power_of_2(hw))
    return min(32 if device.type != "cpu" else 16, next_power_of_2(half)), block_hw


class GateShiftTriton(torch.autograd.Function):
    """:func:`gate_shift` with the Triton kernels (compiled on CUDA, interpreted on the CPU)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, logits: torch.Tensor, past_first: bool) -> torch.Tensor:
        n, c, t, h, w = x.shape
        half = c // 2
        out = fresh_like(x)
        block_c, block_hw = _blocks(half, h * w, x.device)
        grid = (n * t, 2, triton.cdiv(h * w, block_hw))
        _FWD(x.device)[grid](x, logits, out, half, t, h * w, w, *x.stride(), *logits.stride(), *out.stride(),
                             PAST_FIRST=bool(past_first), ACC=acc_dtype(x.dtype), BLOCK_C=block_c,
                             BLOCK_HW=block_hw)
        ctx.save_for_backward(x, logits)
        ctx.past_first = bool(past_first)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, logits = ctx.saved_tensors
        n, c, t, h, w = x.shape
        grad_x = fresh_like(x)
        grad_logits = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        block_c, block_hw = _blocks(c // 2, h * w, x.device)
        grid = (n * t, 2, triton.cdiv(h * w, block_hw))
        _BWD(x.device)[grid](x, logits, grad, grad_x, grad_logits, c // 2, t, h * w, w, *x.stride(),
                             *logits.stride(), *grad.stride(), *grad_x.stride(), PAST_FIRST=ctx.past_first,
                             ACC=acc_dtype(x.dtype), BLOCK_C=block_c, BLOCK_HW=block_hw)
        return grad_x, grad_logits, None


def gate_shift_triton(x: torch.Tensor, logits: torch.Tensor, past_first: bool) -> torch.Tensor:
    return GateShiftTriton.apply(x, logits, past_first)


def gate_shift(x: torch.Tensor, logits: torch.Tensor, past_first: bool, triton_path: bool = False) -> torch.Tensor:
    """``Z`` (module docstring), by Triton when ``triton_path`` (see :func:`~.use_triton`)."""
    return (gate_shift_triton if triton_path else gate_shift_torch)(x, logits, past_first)
