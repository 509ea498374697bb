"""GTA's T x T temporal mixing as one fused op: ``temporal_mix(matrix, values, head_mode, num_groups)``.

``values`` ``(N, T, S, C)`` channels-last (S samples: pixels or regions), channels split into G groups
of ``C/G``; returns ``(N, T, S, C)`` with (eq. 6-8 of the GTA paper)

* ``single``: ``out[:, a, :, c] = sum_b M[a, b] V[:, b, :, c]``;
* ``multi_head``: group g uses its own ``M[g]``;
* ``cross_channel``: head k = ``sum_{g, b} M[g, k, a, b] V_g[:, b]``.

The PyTorch path is one ``einsum``, which for the grouped forms copies the values into a
group-major layout, runs a batched GEMM with a T-sized inner dimension and permutes the result back
(the same again in backward, plus a reduction for the matrix gradient). The Triton kernels read
the values where they lie (any strides) and write the output channels-last: forward, the values'
gradient (the same kernel with the transposed matrix) and the matrix gradient (partial sums per
tile of samples, added up by one ``sum``). Accumulation in float32 (float64 for float64 inputs).
"""

from __future__ import annotations

import torch

from . import acc_dtype, launcher
from ._common import next_power_of_2, tl, triton

# ---------------------------------------------------------------------------------------- PyTorch path


def temporal_mix_torch(matrix: torch.Tensor, values: torch.Tensor, head_mode: str, num_groups: int) -> torch.Tensor:
    """The PyTorch path (module docstring): one ``einsum``."""
    matrix = matrix.to(values.dtype)
    if head_mode == "single":
        return torch.einsum("ab,nbsc->nasc", matrix, values)
    n, frames, samples, channels = values.shape
    grouped = values.reshape(n, frames, samples, num_groups, channels // num_groups)
    if head_mode == "multi_head":
        mixed = torch.einsum("gab,nbsgc->nasgc", matrix, grouped)
    else:
        mixed = torch.einsum("gkab,nbsgc->naskc", matrix, grouped)
    return mixed.reshape(n, frames, samples, channels)


# ----------------------------------------------------------------------------------------- Triton path

if triton is not None:

    @triton.jit
    def _mix_fwd(m_ptr, v_ptr, o_ptr, T, S, CG, NG, smg, smk, sma, smb, svn, svt, svs, svc, son, sot, sos, soc,
                 S_BLOCKS, CROSS: tl.constexpr, ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr,
                 BLOCK_C: tl.constexpr):
        """out[n, a, s, k*CG + c] = sum_{g, b} M[g, k, a, b] V[n, b, s, g*CG + c] (g = k unless CROSS)."""
        pid = tl.program_id(0)
        n = (pid // S_BLOCKS).to(tl.int64)
        s0 = (pid % S_BLOCKS) * BLOCK_S
        k = tl.program_id(1)
        c0 = tl.program_id(2) * BLOCK_C
        j = tl.arange(0, BLOCK_S * BLOCK_C)
        s = s0 + j // BLOCK_C
        c = c0 + j % BLOCK_C
        j_ok = (s < S) & (c < CG)
        a = tl.arange(0, BLOCK_T)
        a_ok = a < T
        acc = tl.zeros([BLOCK_T, BLOCK_S * BLOCK_C], dtype=ACC)
        for gi in range(0, NG):
            if CROSS:
                g = gi
            else:
                g = k
            vrow = v_ptr + n * svn + s.to(tl.int64) * svs + (g * CG + c) * svc
            mcol = m_ptr + g * smg + k * smk + a * sma
            for b in range(0, T):
                m = tl.load(mcol + b * smb, mask=a_ok, other=0.0).to(ACC)
                v = tl.load(vrow + b * svt, mask=j_ok, other=0.0).to(ACC)
                acc += m[:, None] * v[None, :]
        optr = o_ptr + n * son + a[:, None] * sot + s[None, :].to(tl.int64) * sos + (k * CG + c)[None, :] * soc
        tl.store(optr, acc.to(o_ptr.dtype.element_ty), mask=(a_ok[:, None] & j_ok[None, :]) != 0)

    @triton.jit
    def _mix_grad_matrix(g_ptr, v_ptr, p_ptr, T, S, CG, G, sgn, sgt, sgs, sgc, svn, svt, svs, svc, S_BLOCKS,
                         MODE: tl.constexpr, ACC: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr,
                         BLOCK_C: tl.constexpr):
        """partial[pid, pair, a, b] = sum over this tile's (s, c) of dOut[n, a, s, k, c] V[n, b, s, g, c].
        MODE 0: single (one pair), 1: multi-head (pair = g = k), 2: cross-channel (pair = g * G + k)."""
        pid = tl.program_id(0)
        pair = tl.program_id(1)
        n = (pid // S_BLOCKS).to(tl.int64)
        s0 = (pid % S_BLOCKS) * BLOCK_S
        if MODE == 2:
            g = pair // G
            k = pair % G
        else:
            g = pair
            k = pair
        j = tl.arange(0, BLOCK_S * BLOCK_C)
        s = s0 + j // BLOCK_C
        cj = j % BLOCK_C
        t = tl.arange(0, BLOCK_T)
        t_ok = t < T
        acc = tl.zeros([BLOCK_T, BLOCK_T], dtype=ACC)
        for c0 in range(0, CG, BLOCK_C):
            c = c0 + cj
            mask = t_ok[:, None] & ((s < S) & (c < CG))[None, :]
            go = tl.load(g_ptr + n * sgn + t[:, None] * sgt + s[None, :].to(tl.int64) * sgs
                         + (k * CG + c)[None, :] * sgc, mask=mask, other=0.0).to(ACC)
            v = tl.load(v_ptr + n * svn + t[:, None] * svt + s[None, :].to(tl.int64) * svs
                        + (g * CG + c)[None, :] * svc, mask=mask, other=0.0).to(ACC)
            acc += tl.sum(go[:, None, :] * v[None, :, :], axis=2)
        pairs = tl.num_programs(1)
        optr = p_ptr + ((pid.to(tl.int64) * pairs + pair) * T + t[:, None]) * T + t[None, :]
        tl.store(optr, acc, mask=(t_ok[:, None] & t_ok[None, :]) != 0)

    _FWD = launcher(_mix_fwd)
    _GRAD_MATRIX = launcher(_mix_grad_matrix)


_MODES = {"single": 0, "multi_head": 1, "cross_channel": 2}


def _matrix_strides(matrix: torch.Tensor, head_mode: str) -> tuple[int, int, int, int]:
    """``(g, k, a, b)`` strides of the matrix seen as ``M[g, k, a, b]`` (0 for the absent dims)."""
    if head_mode == "single":
        return 0, 0, *matrix.stride()
    if head_mode == "multi_head":
        return matrix.stride(0), 0, matrix.stride(1), matrix.stride(2)
    return matrix.stride()


def _launch_mix(m_strides, matrix, values, out, groups: int, cross: bool) -> None:
    n, frames, samples, channels = values.shape
    cg = channels // groups
    gpu = values.device.type != "cpu"
    block_c = min(next_power_of_2(cg), 32 if gpu else 16)
    block_s = max(1, (128 if gpu else 64) // block_c)
    s_blocks = triton.cdiv(samples, block_s)
    grid = (n * s_blocks, groups, triton.cdiv(cg, block_c))
    _FWD(values.device)[grid](matrix, values, out, frames, samples, cg, groups if cross else 1, *m_strides,
                              *values.stride(), *out.stride(), s_blocks, CROSS=cross, ACC=acc_dtype(values.dtype),
                              BLOCK_T=next_power_of_2(frames), BLOCK_S=block_s, BLOCK_C=block_c)


class TemporalMixTriton(torch.autograd.Function):
    """:func:`temporal_mix` with the Triton kernels (compiled on CUDA, interpreted on the CPU)."""

    @staticmethod
    def forward(ctx, matrix: torch.Tensor, values: torch.Tensor, head_mode: str, num_groups: int) -> torch.Tensor:
        groups = 1 if head_mode == "single" else num_groups
        out = torch.empty(values.shape, dtype=values.dtype, device=values.device)
        _launch_mix(_matrix_strides(matrix, head_mode), matrix, values, out, groups, head_mode == "cross_channel")
        ctx.save_for_backward(matrix, values)
        ctx.head_mode, ctx.groups = head_mode, groups
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        matrix, values = ctx.saved_tensors
        head_mode, groups = ctx.head_mode, ctx.groups
        grad_matrix = grad_values = None
        if ctx.needs_input_grad[1]:
            # dV[g, b] = sum_{k, a} M[g, k, a, b] dOut[k, a]: the forward with M[k, g, b, a]
            sg, sk, sa, sb = _matrix_strides(matrix, head_mode)
            grad_values = torch.empty(values.shape, dtype=values.dtype, device=values.device)
            _launch_mix((sk, sg, sb, sa), matrix, grad, grad_values, groups, head_mode == "cross_channel")
        if ctx.needs_input_grad[0]:
            n, frames, samples, channels = values.shape
            cg = channels // groups
            block_t = next_power_of_2(frames)
            block_c = min(next_power_of_2(cg), 32)
            block_s = max(1, 2048 // (block_t * block_t * block_c))
            s_blocks = triton.cdiv(samples, block_s)
            pairs = groups * groups if head_mode == "cross_channel" else groups
            acc = torch.float64 if values.dtype == torch.float64 else torch.float32
            partial = torch.empty(n * s_blocks, pairs, frames, frames, dtype=acc, device=values.device)
            _GRAD_MATRIX(values.device)[(n * s_blocks, pairs)](
                grad, values, partial, frames, samples, cg, groups, *grad.stride(), *values.stride(), s_blocks,
                MODE=_MODES[head_mode], ACC=acc_dtype(values.dtype), BLOCK_T=block_t, BLOCK_S=block_s,
                BLOCK_C=block_c)
            grad_matrix = partial.sum(0).view(matrix.shape).to(matrix.dtype)
        return grad_matrix, grad_values, None, None


def temporal_mix_triton(matrix: torch.Tensor, values: torch.Tensor, head_mode: str, num_groups: int) -> torch.Tensor:
    return TemporalMixTriton.apply(matrix, values, head_mode, num_groups)


def temporal_mix(matrix: torch.Tensor, values: torch.Tensor, head_mode: str, num_groups: int,
                 triton_path: bool = False) -> torch.Tensor:
    """The mixed values (module docstring), by Triton when ``triton_path`` (see :func:`~.use_triton`)."""
    return (temporal_mix_triton if triton_path else temporal_mix_torch)(matrix, values, head_mode, num_groups)
