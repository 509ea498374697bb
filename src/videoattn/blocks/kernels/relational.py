"""RSA's per-position product chain as one fused op: ``position_products(q, rel, p1, values, eye, dd)``.

Per position (``B = N P`` positions; ``N_h`` heads, widths ``d_k``, ``d_v``, ``d_d``): the relational
kernel applied to the relational context::

    kernel = q (rel + P1)          q (N_h, d_k), rel = H1's projection of the query-key neighbourhood (d_k, d_d)
    a      = kernel F_V^T          F_V = H2's projection of the value neighbourhood (d_v, d_d)
    out    = a (G(V) + I)          G(V) = G's projection of the value neighbourhood (d_v, d_v)

(``rel`` None: kernel type ``V``, ``kernel = q``; no ``G(V)``: context type ``V``, ``out = a``). ``values``
is the neighbourhood convolution's output ``(N, d_v, P, J)``, ``J = d_d [+ d_v]``: ``F_V`` and ``G(V)``.

The PyTorch path (:class:`PositionProducts`) permutes ``values`` into per-position contiguous
matrices (two copies of the M-sized context), then three batched products of tiny matrices, each
materialising its result; backward the same again. The Triton kernels read ``q``, ``rel`` and
``values`` where they lie, keep ``kernel`` and ``a`` in registers (a tile of positions per program)
and write only ``out``; backward recomputes them and writes the gradients of ``q``, ``rel`` and
``values`` (in ``values``' own layout) in one pass; ``P1``'s and ``I``'s gradients are the position
sums of ``rel``'s and ``G(V)``'s. The neighbourhood convolutions before it stay cuDNN's.
"""

from __future__ import annotations

import torch

from . import acc_dtype, launcher
from ._common import next_power_of_2, tl, triton

# ---------------------------------------------------------------------------------------- PyTorch path


class PositionProducts(torch.autograd.Function):
    """The per-position products of RSA with a hand-written backward (training path).

    Inputs (``B = N P`` positions): ``q`` ``(B, N_h, d_k)``; ``rel`` ``(B, d_k, d_d)`` or None (kernel
    ``V``); ``p1`` ``(1, d_k, d_d)`` or None; ``values`` ``(N, d_v, P, J)`` (the value convolution's
    output, ``J = d_d [+ d_v]`` filters per value channel, reordered to ``(B, d_v, J)`` here);
    ``eye`` ``(1, d_v, d_v)`` or None. Returns ``(B, N_h, d_v)``::

        kernel = q (rel + p1)                        # (B, N_h, d_d)
        a      = kernel F_V^T                        # F_V = values[..., :d_d]: (B, d_v, d_d)
        out    = a (G(V) + eye)                      # G(V) = values[..., d_d:]: (B, d_v, d_v)

    Autograd's own ``bmm`` backward is slow for these ``B`` tiny matrices when the incoming
    gradient is not contiguous (it falls back to one copy per matrix); here every product runs
    as one ``bmm`` on contiguous operands, and only the small operands are saved."""

    @staticmethod
    def forward(ctx, q, rel, p1, values, eye, dd: int):
        n, dv, positions, width = values.shape
        values = values.permute(0, 2, 1, 3).reshape(n * positions, dv, width)
        basic = values[:, :, :dd].contiguous()  # F_V: (B, d_v, d_d)
        mix = values[:, :, dd:].contiguous() if width > dd else None  # G(V): (B, d_v, d_v)
        del values
        if rel is not None:
            rel = rel + p1 if p1 is not None else rel.contiguous()
        kernel = q if rel is None else torch.bmm(q, rel)
        a = torch.bmm(kernel, basic.transpose(1, 2))
        if mix is None:
            out = a
        else:
            if eye is not None:
                mix = mix + eye
            out = torch.bmm(a, mix)
        ctx.values_shape = (n, dv, positions, width)
        ctx.flags = (p1 is not None, eye is not None)
        ctx.save_for_backward(q, rel, basic, mix, kernel if rel is not None else None, a if mix is not None else None)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, rel, basic, mix, kernel, a = ctx.saved_tensors
        has_p1, has_eye = ctx.flags
        grad = grad.contiguous()
        grad_rel = grad_p1 = grad_mix = grad_eye = None
        if mix is not None:
            grad_mix = torch.bmm(a.transpose(1, 2), grad)  # (B, d_v, d_v)
            grad_eye = grad_mix.sum(0, keepdim=True) if has_eye else None
            grad_a = torch.bmm(grad, mix.transpose(1, 2))
        else:
            grad_a = grad
        grad_basic = torch.bmm(grad_a.transpose(1, 2), q if kernel is None else kernel)  # (B, d_v, d_d)
        grad_kernel = torch.bmm(grad_a, basic)
        if rel is not None:
            grad_rel = torch.bmm(q.transpose(1, 2), grad_kernel)
            grad_p1 = grad_rel.sum(0, keepdim=True) if has_p1 else None
            grad_q = torch.bmm(grad_kernel, rel.transpose(1, 2))
        else:
            grad_q = grad_kernel
        grad_values = grad_basic if grad_mix is None else torch.cat([grad_basic, grad_mix], dim=2)
        n, dv, positions, width = ctx.values_shape
        grad_values = grad_values.view(n, positions, dv, width).permute(0, 2, 1, 3)
        return grad_q, grad_rel, grad_p1, grad_values, grad_eye, None


def position_products_torch(q, rel, p1, values, eye, dd: int) -> torch.Tensor:
    """The same products with autograd's own ops (inference, export, autocast and the MAC count)."""
    dv, width = values.shape[1], values.shape[3]
    values = values.permute(0, 2, 1, 3).reshape(-1, dv, width)
    kernel = q if rel is None else torch.bmm(q, rel + p1 if p1 is not None else rel)
    out = torch.bmm(kernel, values[:, :, :dd].transpose(1, 2))
    if width > dd:
        mix = values[:, :, dd:]
        out = torch.bmm(out, mix + eye if eye is not None else mix)
    return out


# ----------------------------------------------------------------------------------------- Triton path

if triton is not None:

    @triton.jit
    def _relational_row(d, rel_ptr, p1_ptr, b, cc, srb, src, srd, sp1c, sp1d, bc_ok, c_ok, HAS_P1: tl.constexpr,
                        ACC: tl.constexpr):
        """``(rel + P1)[:, :, d]`` for the tile's positions ``b``: ``(BLOCK_P, BLOCK_K)`` in ``ACC``."""
        rel_d = tl.load(rel_ptr + b[:, None] * srb + cc[None, :] * src + d * srd, mask=bc_ok, other=0.0).to(ACC)
        if HAS_P1:
            rel_d += tl.load(p1_ptr + cc * sp1c + d * sp1d, mask=c_ok, other=0.0).to(ACC)[None, :]
        return rel_d

    @triton.jit
    def _kernel_column(d, q3, q_ptr, rel_ptr, p1_ptr, b, hh, cc, sqb, sqh, sqc, srb, src, srd, sp1c, sp1d, bh_ok,
                       bc_ok, c_ok, HAS_REL: tl.constexpr, HAS_P1: tl.constexpr, ACC: tl.constexpr,
                       BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr):
        """The kernel's column ``d`` for the tile's positions, ``(BLOCK_P, BLOCK_H)``: ``q (rel + P1)[:, :, d]``,
        or ``q``'s own column ``d`` without a relational kernel; and the row ``(rel + P1)[:, :, d]`` it used
        (zeros without one)."""
        if HAS_REL:
            rel_d = _relational_row(d, rel_ptr, p1_ptr, b, cc, srb, src, srd, sp1c, sp1d, bc_ok, c_ok, HAS_P1, ACC)
            kcol = tl.sum(q3 * rel_d[:, None, :], axis=2)
        else:
            rel_d = tl.zeros([BLOCK_P, BLOCK_K], dtype=ACC)
            kcol = tl.load(q_ptr + b[:, None] * sqb + hh[None, :] * sqh + d * sqc, mask=bh_ok, other=0.0).to(ACC)
        return kcol, rel_d

    @triton.jit
    def _mix_column(w, vbase, eye_ptr, vv, DD, svv, svj, sev, sew, bv_ok, v_ok, HAS_EYE: tl.constexpr,
                    ACC: tl.constexpr):
        """Column ``w`` of ``G(V) + I`` (or of ``G(V)``) for the tile's positions, ``(BLOCK_P, BLOCK_V)``."""
        mix_w = tl.load(vbase[:, None] + vv[None, :] * svv + (DD + w) * svj, mask=bv_ok, other=0.0).to(ACC)
        if HAS_EYE:
            mix_w += tl.load(eye_ptr + vv * sev + w * sew, mask=v_ok, other=0.0).to(ACC)[None, :]
        return mix_w

    @triton.jit
    def _tile(q_ptr, v_ptr, B, P, DV, sqb, sqh, sqc, svn, svp, NH: tl.constexpr, DK: tl.constexpr,
              ACC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
              BLOCK_V: tl.constexpr):
        """This program's ``BLOCK_P`` positions ``b`` (of ``B`` = clips x ``P``), the base address of their
        values ``values[n, :, p, :]``, the head / key-width / value-width ranges with their in-range masks,
        and the positions' queries ``q3`` ``(BLOCK_P, BLOCK_H, BLOCK_K)`` in ``ACC``."""
        b = (tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)).to(tl.int64)
        b_ok = b < B
        vbase = v_ptr + (b // P) * svn + (b % P) * svp
        hh = tl.arange(0, BLOCK_H)
        cc = tl.arange(0, BLOCK_K)
        vv = tl.arange(0, BLOCK_V)
        c_ok = cc < DK
        v_ok = vv < DV
        bh_ok = b_ok[:, None] & (hh < NH)[None, :]
        bv_ok = b_ok[:, None] & v_ok[None, :]
        bc_ok = b_ok[:, None] & c_ok[None, :]
        q3 = tl.load(q_ptr + b[:, None, None] * sqb + hh[None, :, None] * sqh + cc[None, None, :] * sqc,
                     mask=(bh_ok[:, :, None] & c_ok[None, None, :]) != 0, other=0.0).to(ACC)
        return b, vbase, hh, cc, vv, c_ok, v_ok, bh_ok, bv_ok, bc_ok, q3

    @triton.jit
    def _context(q3, q_ptr, rel_ptr, p1_ptr, vbase, b, hh, cc, vv, DD, sqb, sqh, sqc, srb, src, srd, sp1c, sp1d,
                 svv, svj, bh_ok, bv_ok, bc_ok, c_ok, HAS_REL: tl.constexpr, HAS_P1: tl.constexpr,
                 ACC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
                 BLOCK_V: tl.constexpr):
        """``a = kernel F_V^T`` for the tile's positions, ``(BLOCK_P, BLOCK_H, BLOCK_V)``."""
        a = tl.zeros([BLOCK_P, BLOCK_H, BLOCK_V], dtype=ACC)
        for d in range(0, DD):
            kcol, _ = _kernel_column(d, q3, q_ptr, rel_ptr, p1_ptr, b, hh, cc, sqb, sqh, sqc, srb, src, srd, sp1c,
                                     sp1d, bh_ok, bc_ok, c_ok, HAS_REL, HAS_P1, ACC, BLOCK_P, BLOCK_K)
            basic_d = tl.load(vbase[:, None] + vv[None, :] * svv + d * svj, mask=bv_ok, other=0.0).to(ACC)
            a += kcol[:, :, None] * basic_d[:, None, :]
        return a

    @triton.jit
    def _products_fwd(q_ptr, rel_ptr, p1_ptr, v_ptr, eye_ptr, o_ptr, B, P, DD, DV,
                      sqb, sqh, sqc, srb, src, srd, sp1c, sp1d, svn, svv, svp, svj, sev, sew, sob, soh, sov,
                      NH: tl.constexpr, DK: tl.constexpr, HAS_REL: tl.constexpr, HAS_P1: tl.constexpr,
                      HAS_MIX: tl.constexpr, HAS_EYE: tl.constexpr, ACC: tl.constexpr, BLOCK_P: tl.constexpr,
                      BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_V: tl.constexpr):
        b, vbase, hh, cc, vv, c_ok, v_ok, bh_ok, bv_ok, bc_ok, q3 = _tile(
            q_ptr, v_ptr, B, P, DV, sqb, sqh, sqc, svn, svp, NH, DK, ACC, BLOCK_P, BLOCK_H, BLOCK_K, BLOCK_V)
        a = _context(q3, q_ptr, rel_ptr, p1_ptr, vbase, b, hh, cc, vv, DD, sqb, sqh, sqc, srb, src, srd, sp1c,
                     sp1d, svv, svj, bh_ok, bv_ok, bc_ok, c_ok, HAS_REL, HAS_P1, ACC, BLOCK_P, BLOCK_H, BLOCK_K,
                     BLOCK_V)
        if HAS_MIX:
            for w in range(0, DV):  # out[:, :, w] = a (G(V) + I)[:, w]
                mix_w = _mix_column(w, vbase, eye_ptr, vv, DD, svv, svj, sev, sew, bv_ok, v_ok, HAS_EYE, ACC)
                out_w = tl.sum(a * mix_w[:, None, :], axis=2)
                tl.store(o_ptr + b[:, None] * sob + hh[None, :] * soh + w * sov,
                         out_w.to(o_ptr.dtype.element_ty), mask=bh_ok)
        else:
            tl.store(o_ptr + b[:, None, None] * sob + hh[None, :, None] * soh + vv[None, None, :] * sov,
                     a.to(o_ptr.dtype.element_ty), mask=(bh_ok[:, :, None] & v_ok[None, None, :]) != 0)

    @triton.jit
    def _products_bwd(q_ptr, rel_ptr, p1_ptr, v_ptr, eye_ptr, g_ptr, gq_ptr, grel_ptr, gv_ptr, B, P, DD, DV,
                      sqb, sqh, sqc, srb, src, srd, sp1c, sp1d, svn, svv, svp, svj, sev, sew, sgb, sgh, sgv,
                      gvn, gvv, gvp, gvj, NH: tl.constexpr, DK: tl.constexpr, HAS_REL: tl.constexpr,
                      HAS_P1: tl.constexpr, HAS_MIX: tl.constexpr, HAS_EYE: tl.constexpr, ACC: tl.constexpr,
                      BLOCK_P: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_V: tl.constexpr):
        b, vbase, hh, cc, vv, c_ok, v_ok, bh_ok, bv_ok, bc_ok, q3 = _tile(
            q_ptr, v_ptr, B, P, DV, sqb, sqh, sqc, svn, svp, NH, DK, ACC, BLOCK_P, BLOCK_H, BLOCK_K, BLOCK_V)
        gvbase = gv_ptr + (b // P) * gvn + (b % P) * gvp
        if HAS_MIX:
            # recompute a = kernel F_V^T, then dL/dG(V) = a^T dOut and dL/da = dOut (G(V) + I)^T
            a = _context(q3, q_ptr, rel_ptr, p1_ptr, vbase, b, hh, cc, vv, DD, sqb, sqh, sqc, srb, src, srd,
                         sp1c, sp1d, svv, svj, bh_ok, bv_ok, bc_ok, c_ok, HAS_REL, HAS_P1, ACC, BLOCK_P, BLOCK_H,
                         BLOCK_K, BLOCK_V)
            grad_a = tl.zeros([BLOCK_P, BLOCK_H, BLOCK_V], dtype=ACC)
            for w in range(0, DV):
                g_w = tl.load(g_ptr + b[:, None] * sgb + hh[None, :] * sgh + w * sgv, mask=bh_ok,
                              other=0.0).to(ACC)
                mix_w = _mix_column(w, vbase, eye_ptr, vv, DD, svv, svj, sev, sew, bv_ok, v_ok, HAS_EYE, ACC)
                grad_a += g_w[:, :, None] * mix_w[:, None, :]
                grad_mix_w = tl.sum(a * g_w[:, :, None], axis=1)  # (P, d_v): dL/dG(V)[:, :, w]
                tl.store(gvbase[:, None] + vv[None, :] * gvv + (DD + w) * gvj,
                         grad_mix_w.to(gv_ptr.dtype.element_ty), mask=bv_ok)
        else:
            grad_a = tl.load(g_ptr + b[:, None, None] * sgb + hh[None, :, None] * sgh + vv[None, None, :] * sgv,
                             mask=(bh_ok[:, :, None] & v_ok[None, None, :]) != 0, other=0.0).to(ACC)
        grad_q3 = tl.zeros([BLOCK_P, BLOCK_H, BLOCK_K], dtype=ACC)
        for d in range(0, DD):
            kcol, rel_d = _kernel_column(d, q3, q_ptr, rel_ptr, p1_ptr, b, hh, cc, sqb, sqh, sqc, srb, src, srd,
                                         sp1c, sp1d, bh_ok, bc_ok, c_ok, HAS_REL, HAS_P1, ACC, BLOCK_P, BLOCK_K)
            basic_d = tl.load(vbase[:, None] + vv[None, :] * svv + d * svj, mask=bv_ok, other=0.0).to(ACC)
            grad_basic_d = tl.sum(grad_a * kcol[:, :, None], axis=1)  # dL/dF_V[:, :, d]
            tl.store(gvbase[:, None] + vv[None, :] * gvv + d * gvj, grad_basic_d.to(gv_ptr.dtype.element_ty),
                     mask=bv_ok)
            gk_d = tl.sum(grad_a * basic_d[:, None, :], axis=2)  # dL/dkernel[:, :, d]
            if HAS_REL:
                grad_rel_d = tl.sum(q3 * gk_d[:, :, None], axis=1)
                tl.store(grel_ptr + (b[:, None] * DK + cc[None, :]) * DD + d,
                         grad_rel_d.to(grel_ptr.dtype.element_ty), mask=bc_ok)
                grad_q3 += gk_d[:, :, None] * rel_d[:, None, :]
            else:
                tl.store(gq_ptr + (b[:, None] * NH + hh[None, :]) * DK + d, gk_d.to(gq_ptr.dtype.element_ty),
                         mask=bh_ok)
        if HAS_REL:
            tl.store(gq_ptr + (b[:, None, None] * NH + hh[None, :, None]) * DK + cc[None, None, :],
                     grad_q3.to(gq_ptr.dtype.element_ty), mask=(bh_ok[:, :, None] & c_ok[None, None, :]) != 0)

    _FWD = launcher(_products_fwd)
    _BWD = launcher(_products_bwd)


def _strides(t: torch.Tensor | None, dims: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(t.stride(d) for d in dims) if t is not None else (0,) * len(dims)


def _config(q: torch.Tensor, dv: int) -> dict:
    heads, dk = q.shape[1], q.shape[2]
    block_h, block_k, block_v = next_power_of_2(heads), next_power_of_2(dk), next_power_of_2(dv)
    budget = 4096 if q.device.type != "cpu" else 2048  # elements of the largest (P, heads, width) tile
    block_p = max(1, min(64, budget // (block_h * max(block_k, block_v))))
    block_p = 1 << (block_p.bit_length() - 1)
    return dict(NH=heads, DK=dk, ACC=acc_dtype(q.dtype), BLOCK_P=block_p, BLOCK_H=block_h, BLOCK_K=block_k,
                BLOCK_V=block_v)


class PositionProductsTriton(torch.autograd.Function):
    """:class:`PositionProducts`'s function with the Triton kernels (compiled on CUDA, interpreted on the CPU)."""

    @staticmethod
    def forward(ctx, q, rel, p1, values, eye, dd: int):
        n, dv, positions, width = values.shape
        batch = q.shape[0]
        has_mix = width > dd
        out = torch.empty(batch, q.shape[1], dv, dtype=q.dtype, device=q.device)
        cfg = _config(q, dv)
        dummy = q  # an unused pointer argument
        grid = (triton.cdiv(batch, cfg["BLOCK_P"]),)
        _FWD(q.device)[grid](q, dummy if rel is None else rel, dummy if p1 is None else p1, values,
                             dummy if eye is None else eye, out, batch, positions, dd, dv, *q.stride(),
                             *_strides(rel, (0, 1, 2)), *_strides(p1, (1, 2)), *values.stride(),
                             *_strides(eye, (1, 2)), *out.stride(), HAS_REL=rel is not None,
                             HAS_P1=p1 is not None, HAS_MIX=has_mix, HAS_EYE=eye is not None and has_mix, **cfg)
        ctx.dd = dd
        ctx.save_for_backward(q, rel, p1, values, eye)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, rel, p1, values, eye = ctx.saved_tensors
        dd = ctx.dd
        n, dv, positions, width = values.shape
        batch = q.shape[0]
        has_mix = width > dd
        grad_q = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        grad_rel = torch.empty(rel.shape, dtype=rel.dtype, device=rel.device) if rel is not None else None
        grad_values = torch.empty(values.shape, dtype=values.dtype, device=values.device)
        cfg = _config(q, dv)
        dummy = q
        grid = (triton.cdiv(batch, cfg["BLOCK_P"]),)
        _BWD(q.device)[grid](q, dummy if rel is None else rel, dummy if p1 is None else p1, values,
                             dummy if eye is None else eye, grad, grad_q, dummy if grad_rel is None else grad_rel,
                             grad_values, batch, positions, dd, dv, *q.stride(), *_strides(rel, (0, 1, 2)),
                             *_strides(p1, (1, 2)), *values.stride(), *_strides(eye, (1, 2)), *grad.stride(),
                             *grad_values.stride(), HAS_REL=rel is not None, HAS_P1=p1 is not None,
                             HAS_MIX=has_mix, HAS_EYE=eye is not None and has_mix, **cfg)
        grad_p1 = grad_rel.sum(0, keepdim=True).to(p1.dtype) if p1 is not None and ctx.needs_input_grad[2] else None
        grad_eye = None
        if eye is not None and has_mix and ctx.needs_input_grad[4]:
            grad_eye = grad_values[:, :, :, dd:].sum((0, 2)).unsqueeze(0).to(eye.dtype)  # sum_p dL/dG(V)[v, w]
        return grad_q, grad_rel, grad_p1, grad_values, grad_eye, None


def position_products(q, rel, p1, values, eye, dd: int, triton_path: bool = False) -> torch.Tensor:
    """``out`` ``(B, N_h, d_v)`` (module docstring): Triton when ``triton_path`` (:func:`~.use_triton`),
    else :class:`PositionProducts` while gradients are recorded outside autocast, else
    :func:`position_products_torch`."""
    if triton_path:
        return PositionProductsTriton.apply(q, rel, p1, values, eye, dd)
    if torch.is_grad_enabled() and not torch.is_autocast_enabled(q.device.type):
        return PositionProducts.apply(q, rel, p1, values, eye, dd)
    return position_products_torch(q, rel, p1, values, eye, dd)
