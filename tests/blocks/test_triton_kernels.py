"""The fused Triton kernels (``videoattn.blocks.kernels``) against float64 references written from the
papers' equations, forward and backward, through Triton's interpreter on the CPU.

The references below loop over frames, channel groups and positions; they never call the kernels'
modules or the blocks' helpers (their gradients are autograd's through those loops). The interpreter
is switched on per test (``TRITON_INTERPRET=1`` through ``monkeypatch``): the kernels module builds
an interpreted kernel for CPU tensors at launch, whatever the variable was at import, and the rest
of the suite keeps running the PyTorch paths. Tests marked ``cuda`` run the compiled kernels on a
GPU in float32 against the same references in float64 on the CPU (``scripts/gpu_check.sh``'s
``tests-cuda`` stage).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytest.importorskip("triton")

from videoattn.blocks import create  # noqa: E402
from videoattn.blocks.kernels import gate_shift as gs  # noqa: E402
from videoattn.blocks.kernels import relational as rl  # noqa: E402
from videoattn.blocks.kernels import temporal_mix as tm  # noqa: E402
from videoattn.errors import ConfigError  # noqa: E402

from ._block_refs import randomize_  # noqa: E402

TOL = 1e-10


@pytest.fixture
def interpret(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def rand(*shape, seed=0, dtype=torch.float64, scale=1.0):
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale).to(dtype)


def grads(fn, inputs, weight):
    """``fn(*inputs)`` and the gradients of ``sum(out * weight)`` w.r.t. every input."""
    inputs = [t.detach().clone().requires_grad_(True) if t is not None else None for t in inputs]
    out = fn(*inputs)
    leaves = [t for t in inputs if t is not None]
    return out.detach(), [g.detach() for g in torch.autograd.grad((out * weight.to(out.dtype)).sum(), leaves)]


def max_err(got, want) -> float:
    return max((g.double().cpu() - w.double().cpu()).abs().max().item() for g, w in zip(got, want))


# ------------------------------------------------------------------------------------------- references


def reference_gate_shift(x, logits, past_first):
    """GSM (SA-GSM report sec. 4.1): ``Y_k = tanh(W_k * X_k) . X_k``, ``Z_1 = shift_fw(Y_1) + X_1 - Y_1``,
    ``Z_2 = shift_bw(Y_2) + X_2 - Y_2`` (swapped when not ``past_first``), frame by frame."""
    n, c, frames = x.shape[:3]
    half = c // 2
    out = []
    for t in range(frames):
        parts = []
        for k in range(2):
            chans = slice(k * half, (k + 1) * half)
            y = torch.tanh(logits[:, k:k + 1, t]) * x[:, chans, t]
            z = x[:, chans, t] - y
            source = t - 1 if (k == 0) == past_first else t + 1  # shift_fw: frame t gets t-1's Y
            if 0 <= source < frames:
                z = z + torch.tanh(logits[:, k:k + 1, source]) * x[:, chans, source]
            parts.append(z)
        out.append(torch.cat(parts, 1))
    return torch.stack(out, 2)


def reference_temporal_mix(matrix, values, head_mode, groups):
    """GTA eq. 6-8: head k at frame a = ``sum_{g, b} M[g, k, a, b] V_g[b]`` (only g = k for multi-head;
    one ``M[a, b]`` for all channels for single)."""
    n, frames, samples, channels = values.shape
    groups = 1 if head_mode == "single" else groups
    cg = channels // groups
    out = [[None] * groups for _ in range(frames)]
    for a in range(frames):
        for k in range(groups):
            total = torch.zeros(n, samples, cg, dtype=values.dtype)
            for g in range(groups):
                if head_mode != "cross_channel" and g != k:
                    continue
                for b in range(frames):
                    m = (matrix[a, b] if head_mode == "single" else matrix[k, a, b] if head_mode == "multi_head"
                         else matrix[g, k, a, b])
                    total = total + m * values[:, b, :, g * cg:(g + 1) * cg]
            out[a][k] = total
    return torch.stack([torch.cat(row, -1) for row in out], 1)


def reference_position_products(q, rel, p1, values, eye, dd):
    """RSA per position p (release's association): kernel ``kappa_h = q_h (rel + P1)``, context
    ``F = (G(V) + I)^T F_V`` (``d_v x d_d``), output ``y[h, v] = sum_d kappa_h[d] F[v, d]``."""
    n, dv, positions, width = values.shape
    rows = []
    for b in range(q.shape[0]):
        ni, p = divmod(b, positions)
        basic = values[ni, :, p, :dd]  # F_V
        kernel = q[b] if rel is None else q[b] @ (rel[b] + (p1[0] if p1 is not None else 0))
        if width > dd:
            mix = values[ni, :, p, dd:] + (eye[0] if eye is not None else 0)  # G(V) [+ I]
            context = mix.T @ basic
        else:
            context = basic
        rows.append(kernel @ context.T)
    return torch.stack(rows)


# -------------------------------------------------------------------------------------- gate and shift

GATE_SHAPES = [(2, 6, 5, 3, 7), (1, 10, 3, 5, 5), (1, 2, 1, 1, 1)]  # odd T, C/2, H*W; batch 1; one frame


@pytest.mark.parametrize("shape", GATE_SHAPES)
@pytest.mark.parametrize("past_first", [True, False])
def test_gate_shift_kernel_matches_reference(interpret, shape, past_first):
    n, c, t, h, w = shape
    x, logits, weight = rand(*shape, seed=1), rand(n, 2, t, h, w, seed=2), rand(*shape, seed=3)
    want, want_grads = grads(lambda a, b: reference_gate_shift(a, b, past_first), [x, logits], weight)
    got, got_grads = grads(lambda a, b: gs.gate_shift_triton(a, b, past_first), [x, logits], weight)
    assert max_err([got], [want]) < TOL
    assert max_err(got_grads, want_grads) < TOL


def test_gate_shift_kernel_channels_last_and_strided_gate(interpret):
    x = rand(1, 8, 4, 3, 5, seed=4).contiguous(memory_format=torch.channels_last_3d)
    logits = rand(1, 4, 2, 3, 5, seed=5).transpose(1, 2)  # the block's (N, T, 2, H, W) pre-gate, transposed
    weight = rand(1, 8, 4, 3, 5, seed=6)
    want, want_grads = grads(lambda a, b: reference_gate_shift(a, b, True), [x, logits], weight)
    got, got_grads = grads(lambda a, b: gs.gate_shift_triton(a, b, True), [x, logits], weight)
    assert got.is_contiguous(memory_format=torch.channels_last_3d)
    assert max_err([got], [want]) < TOL and max_err(got_grads, want_grads) < TOL


# ----------------------------------------------------------------------------------------- temporal mix

MIX_CASES = [("single", (5, 5), 1), ("multi_head", (3, 5, 5), 3), ("cross_channel", (3, 3, 5, 5), 3),
             ("cross_channel", (2, 2, 3, 3), 2)]


@pytest.mark.parametrize("head_mode,matrix_shape,groups", MIX_CASES)
def test_temporal_mix_kernel_matches_reference(interpret, head_mode, matrix_shape, groups):
    frames = matrix_shape[-1]
    batch = 1 if frames == 3 else 2
    values = rand(batch, frames, 7, 3 * groups if frames == 5 else 10, seed=7)  # odd samples, odd groups
    matrix, weight = rand(*matrix_shape, seed=8), rand(*values.shape, seed=9)
    want, want_grads = grads(lambda m, v: reference_temporal_mix(m, v, head_mode, groups), [matrix, values], weight)
    got, got_grads = grads(lambda m, v: tm.temporal_mix_triton(m, v, head_mode, groups), [matrix, values], weight)
    assert max_err([got], [want]) < TOL
    assert max_err(got_grads, want_grads) < TOL


def test_temporal_mix_kernel_strided_values(interpret):
    # a view with non-unit channel stride (the region branch's values can be one)
    values = rand(2, 4, 6, 5, seed=10).permute(0, 2, 3, 1)  # (N, T=6, S=5, C=4), channel stride 30
    matrix, weight = rand(2, 2, 6, 6, seed=11), rand(2, 6, 5, 4, seed=12)
    want, want_grads = grads(lambda m, v: reference_temporal_mix(m, v, "cross_channel", 2), [matrix, values], weight)
    got, got_grads = grads(lambda m, v: tm.temporal_mix_triton(m, v, "cross_channel", 2), [matrix, values], weight)
    assert max_err([got], [want]) < TOL and max_err(got_grads, want_grads) < TOL


# ------------------------------------------------------------------------------------ position products

PRODUCT_CASES = [  # kernel type, context type
    ("VplusR", "VplusR"), ("R", "R"), ("V", "V"), ("V", "VplusR"), ("VplusR", "V"),
]


def product_inputs(kernel_type, context_type, batch=2, positions=7, heads=3, dk=5, dv=6, seed=20):
    dd = dk if kernel_type == "V" else 4
    q = rand(batch * positions, heads, dk, seed=seed)
    rel = rand(batch * positions, dk, dd, seed=seed + 1) if kernel_type != "V" else None
    p1 = rand(1, dk, dd, seed=seed + 2) if kernel_type == "VplusR" else None
    width = dd + (dv if context_type != "V" else 0)
    values = rand(batch, dv, positions, width, seed=seed + 3)
    eye = rand(1, dv, dv, seed=seed + 4) if context_type == "VplusR" else None
    return [q, rel, p1, values, eye], dd


@pytest.mark.parametrize("kernel_type,context_type", PRODUCT_CASES)
def test_position_products_kernel_matches_reference(interpret, kernel_type, context_type):
    inputs, dd = product_inputs(kernel_type, context_type)
    weight = rand(inputs[0].shape[0], inputs[0].shape[1], inputs[3].shape[1], seed=30)
    want, want_grads = grads(lambda *a: reference_position_products(*a, dd), inputs, weight)
    got, got_grads = grads(lambda *a: rl.PositionProductsTriton.apply(*a, dd), inputs, weight)
    assert max_err([got], [want]) < TOL
    assert max_err(got_grads, want_grads) < TOL


def test_position_products_kernel_batch1_and_strided_values(interpret):
    inputs, dd = product_inputs("VplusR", "VplusR", batch=1, positions=5, heads=2, dk=3, dv=5, seed=40)
    values = inputs[3]
    inputs[3] = values.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)  # position-major memory
    weight = rand(5, 2, 5, seed=41)
    want, want_grads = grads(lambda *a: reference_position_products(*a, dd), inputs, weight)
    got, got_grads = grads(lambda *a: rl.PositionProductsTriton.apply(*a, dd), inputs, weight)
    assert max_err([got], [want]) < TOL and max_err(got_grads, want_grads) < TOL


# --------------------------------------------------------------------------------- low precision inputs


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 0.1)])
def test_kernels_low_precision(interpret, dtype, tol):
    """float32 / bfloat16 inputs (float32 accumulation) against the float64 references."""
    x, logits = rand(1, 6, 3, 3, 5, seed=50), rand(1, 2, 3, 3, 5, seed=51, scale=0.5)
    weight = rand(1, 6, 3, 3, 5, seed=52)
    want, want_grads = grads(lambda a, b: reference_gate_shift(a, b, True), [x, logits], weight)
    got, got_grads = grads(lambda a, b: gs.gate_shift_triton(a, b, True), [x.to(dtype), logits.to(dtype)], weight)
    assert got.dtype == dtype and max_err([got], [want]) < tol and max_err(got_grads, want_grads) < tol * 4

    matrix, values = rand(2, 2, 3, 3, seed=53), rand(1, 3, 5, 4, seed=54)
    weight = rand(1, 3, 5, 4, seed=55)
    want, want_grads = grads(lambda m, v: reference_temporal_mix(m, v, "cross_channel", 2), [matrix, values], weight)
    got, got_grads = grads(lambda m, v: tm.temporal_mix_triton(m, v, "cross_channel", 2),
                           [matrix.float(), values.to(dtype)], weight)
    assert got.dtype == dtype and max_err([got], [want]) < tol and max_err(got_grads, want_grads) < tol * 4

    inputs, dd = product_inputs("VplusR", "VplusR", batch=1, positions=3, heads=2, dk=3, dv=4, seed=56)
    weight = rand(3, 2, 4, seed=57)
    want, want_grads = grads(lambda *a: reference_position_products(*a, dd), inputs, weight)
    low = [t.to(dtype) for t in inputs]
    got, got_grads = grads(lambda *a: rl.PositionProductsTriton.apply(*a, dd), low, weight)
    assert got.dtype == dtype and max_err([got], [want]) < tol * 4 and max_err(got_grads, want_grads) < tol * 8


# ------------------------------------------------------------------------------------------ whole blocks

BLOCKS = [
    ("gsm", dict(channels=6), (2, 6, 3, 3, 5)),
    ("gsm", dict(channels=8, released_order=True, gate_impl="conv3d"), (1, 8, 3, 3, 3)),
    ("gta", dict(channels=16, num_frames=3, num_groups=2, spatial=False), (1, 16, 3, 3, 3)),
    ("gta", dict(channels=16, num_frames=3, head_mode="single", region_source="input"), (1, 16, 3, 2, 3)),
    ("rsa", dict(channels=6, num_heads=2, kernel_size=3, chunk_frames=None), (1, 6, 2, 3, 3)),
]


@pytest.mark.parametrize("name,options,shape", BLOCKS, ids=lambda v: v if isinstance(v, str) else None)
def test_block_with_triton_kernel_equals_torch_kernel(interpret, monkeypatch, name, options, shape):
    launches = []
    for module, attr in ((gs, "gate_shift_triton"), (tm, "temporal_mix_triton")):
        real = getattr(module, attr)
        monkeypatch.setattr(module, attr, lambda *a, _real=real: launches.append(1) or _real(*a))
    real_products = rl.PositionProductsTriton

    class Spy:
        @staticmethod
        def apply(*a):
            launches.append(1)
            return real_products.apply(*a)

    monkeypatch.setattr(rl, "PositionProductsTriton", Spy)
    options = dict(options)
    channels, frames = options.pop("channels"), options.pop("num_frames", None)
    blocks = {}
    for kernel in ("torch", "triton"):
        torch.manual_seed(0)
        block = create(name, channels, frames, kernel=kernel, **options).double()
        randomize_(block, seed=1)
        blocks[kernel] = block
    blocks["triton"].load_state_dict(blocks["torch"].state_dict())
    x = rand(*shape, seed=60)
    results = {}
    for kernel, block in blocks.items():
        inp = x.clone().requires_grad_(True)
        out = block(inp)
        weight = rand(*out.shape, seed=61)
        params = [p for p in block.parameters() if p.requires_grad]
        results[kernel] = (out.detach(), torch.autograd.grad((out * weight).sum(), [inp, *params]))
        assert bool(launches) == (kernel == "triton")  # the Triton path was taken, and only with kernel: triton
    assert max_err([results["triton"][0]], [results["torch"][0]]) < TOL
    assert max_err(results["triton"][1], results["torch"][1]) < TOL


# -------------------------------------------------------------------------------------------- dispatch


def test_triton_kernel_on_cpu_without_interpreter_is_a_one_line_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    block = create("gsm", 4, kernel="triton")
    with pytest.raises(ConfigError) as info:
        block(torch.randn(1, 4, 2, 3, 3))
    message = str(info.value)
    assert "\n" not in message and "kernel='triton'" in message and "TRITON_INTERPRET=1" in message


def test_unknown_kernel_choice_is_an_error():
    with pytest.raises(ConfigError, match="kernel must be one of auto, triton, torch"):
        create("rsa", 8, kernel="cuda")


def test_auto_stays_on_pytorch_on_cuda_until_the_kernels_are_verified_there():
    """``auto`` does not hand users the Triton kernels on CUDA before a GPU run verified and timed them."""
    from videoattn.blocks import kernels

    class CudaLike:  # what use_triton reads of a CUDA tensor
        is_cuda = True
        device = torch.device("cuda")

    assert kernels.AUTO_USES_TRITON_ON_CUDA is False
    assert not kernels.use_triton("gsm", "auto", CudaLike())


def test_auto_and_torch_never_reach_triton_on_cpu(monkeypatch):
    """``auto`` on a CPU tensor takes the PyTorch path, even with the interpreter on."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from videoattn.blocks.kernels import use_triton

    x = torch.randn(1, 4, 2, 3, 3)
    assert not use_triton("gsm", "auto", x) and not use_triton("gsm", "torch", x)
    assert use_triton("gsm", "triton", x)


def test_importing_the_kernels_does_not_need_the_interpreter_variable():
    code = ("import os; os.environ.pop('TRITON_INTERPRET', None)\n"
            "import videoattn.blocks.kernels.gate_shift as g, triton\n"
            "assert isinstance(g._gate_shift_fwd, triton.runtime.jit.JITFunction)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------- compiled for a GPU, without one


def _compile_cases():
    import triton.language as tl

    f32, bf16 = "*fp32", "*bf16"
    cases = []
    for past_first in (True, False):
        blocks = dict(PAST_FIRST=past_first, ACC=tl.float32, BLOCK_C=32, BLOCK_HW=128)
        cases += [(gs._gate_shift_fwd, dict(x_ptr=bf16, logit_ptr=bf16, out_ptr=bf16), blocks),
                  (gs._gate_shift_bwd, dict(x_ptr=f32, logit_ptr=f32, g_ptr=f32, gx_ptr=f32, glogit_ptr=f32), blocks)]
    for cross in (True, False):
        cases.append((tm._mix_fwd, dict(m_ptr=f32, v_ptr=bf16, o_ptr=bf16),
                      dict(CROSS=cross, ACC=tl.float32, BLOCK_T=8, BLOCK_S=4, BLOCK_C=32)))
    for mode in (0, 1, 2):
        cases.append((tm._mix_grad_matrix, dict(g_ptr=f32, v_ptr=bf16, p_ptr=f32),
                      dict(MODE=mode, ACC=tl.float32, BLOCK_T=8, BLOCK_S=1, BLOCK_C=32)))
    for flags in ((True, True, True, True), (False, False, False, False), (True, False, True, False)):
        consts = dict(NH=8, DK=16, HAS_REL=flags[0], HAS_P1=flags[1], HAS_MIX=flags[2], HAS_EYE=flags[3],
                      ACC=tl.float32, BLOCK_P=32, BLOCK_H=8, BLOCK_K=16, BLOCK_V=16)
        names = ("q_ptr", "rel_ptr", "p1_ptr", "v_ptr", "eye_ptr")
        cases += [(rl._products_fwd, dict.fromkeys((*names, "o_ptr"), f32), consts),
                  (rl._products_bwd, dict.fromkeys((*names, "g_ptr", "gq_ptr", "grel_ptr", "gv_ptr"), bf16), consts)]
    return cases


def test_kernels_compile_for_a_cuda_target(monkeypatch, tmp_path):
    """Every kernel variant goes through Triton's compiler down to PTX for an sm_90 target (no GPU
    needed): what the interpreter cannot check (types, constexpr branches, layouts) on this machine.
    Interpreted launches run first, in this process: they must leave ``triton.language`` unpatched
    (on a GPU machine the compiled kernels, and inductor's, run in the same process as the interpreter
    tests)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if "nvidia" not in triton.backends.backends:
        pytest.skip("this triton has no NVIDIA backend")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = rand(1, 4, 2, 2, 3, seed=90, dtype=torch.float32).requires_grad_(True)
    gs.gate_shift_triton(x, rand(1, 2, 2, 2, 3, seed=91, dtype=torch.float32), True).sum().backward()
    inputs, dd = product_inputs("VplusR", "VplusR", batch=1, positions=2, heads=2, dk=2, dv=2)
    grads(lambda *a: rl.PositionProductsTriton.apply(*a, dd), inputs, rand(2, 2, 2, seed=92))
    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    for kernel, pointers, consts in _compile_cases():
        names = kernel.arg_names
        signature = {name: "constexpr" if name in consts else pointers.get(name, "i32") for name in names}
        source = ASTSource(fn=kernel, signature=signature,
                           constexprs={(names.index(k),): v for k, v in consts.items()})
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
        assert "ptx" in compiled.asm, kernel


# ------------------------------------------------------------------------------------- on a CUDA GPU


def _cuda(inputs, dtype=torch.float32):
    return [t.to("cuda", dtype) if t is not None else None for t in inputs]


@pytest.mark.cuda
@pytest.mark.parametrize("past_first", [True, False])
def test_gate_shift_kernel_cuda(past_first):
    shape = (2, 20, 5, 7, 9)
    x, logits, weight = rand(*shape, seed=70), rand(2, 2, 5, 7, 9, seed=71), rand(*shape, seed=72)
    want, want_grads = grads(lambda a, b: reference_gate_shift(a, b, past_first), [x, logits], weight)
    got, got_grads = grads(lambda a, b: gs.gate_shift_triton(a, b, past_first), _cuda([x, logits]), weight.cuda())
    assert max_err([got], [want]) < 1e-5 and max_err(got_grads, want_grads) < 1e-4


@pytest.mark.cuda
@pytest.mark.parametrize("head_mode,matrix_shape,groups", MIX_CASES)
def test_temporal_mix_kernel_cuda(head_mode, matrix_shape, groups):
    values = rand(2, matrix_shape[-1], 37, 6 * groups, seed=73)
    matrix, weight = rand(*matrix_shape, seed=74), rand(*values.shape, seed=75)
    want, want_grads = grads(lambda m, v: reference_temporal_mix(m, v, head_mode, groups), [matrix, values], weight)
    got, got_grads = grads(lambda m, v: tm.temporal_mix_triton(m, v, head_mode, groups), _cuda([matrix, values]),
                           weight.cuda())
    assert max_err([got], [want]) < 1e-5 and max_err(got_grads, want_grads) < 1e-4


@pytest.mark.cuda
@pytest.mark.parametrize("kernel_type,context_type", PRODUCT_CASES)
def test_position_products_kernel_cuda(kernel_type, context_type):
    inputs, dd = product_inputs(kernel_type, context_type, batch=2, positions=45, heads=4, dk=8, dv=8, seed=76)
    weight = rand(90, 4, 8, seed=77)
    want, want_grads = grads(lambda *a: reference_position_products(*a, dd), inputs, weight)
    got, got_grads = grads(lambda *a: rl.PositionProductsTriton.apply(*a, dd), _cuda(inputs), weight.cuda())
    assert max_err([got], [want]) < 1e-4 and max_err(got_grads, want_grads) < 1e-3


@pytest.mark.cuda
@pytest.mark.parametrize("name,options,shape", BLOCKS, ids=lambda v: v if isinstance(v, str) else None)
def test_block_triton_kernel_on_cuda_matches_torch(monkeypatch, name, options, shape):
    """``kernel: triton`` on CUDA (the compiled kernels), float32 without TF32, against ``kernel: torch`` in
    float64 on the CPU: output and input gradient."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    options = dict(options)
    channels, frames = options.pop("channels"), options.pop("num_frames", None)
    torch.manual_seed(0)
    block = randomize_(create(name, channels, frames, kernel="torch", **options).double(), seed=1)
    x = rand(*shape, seed=60)
    want, want_grads = grads(block, [x], rand(*block(x).shape, seed=61))
    cuda_block = create(name, channels, frames, kernel="triton", **options).cuda()
    cuda_block.load_state_dict(block.state_dict())
    got, got_grads = grads(cuda_block, _cuda([x]), rand(*want.shape, seed=61).cuda())
    assert max_err([got], [want]) < 1e-4 and max_err(got_grads, want_grads) < 1e-3
