"""Fused Triton kernels for the ops the library cannot fuse (issue 25, "Fused kernels").

One module per fused op, each with the Triton path (``@triton.jit`` forward and backward kernels in a
``torch.autograd.Function``) and a pure-PyTorch fallback of the same signature (the blocks' own code
path):

* :mod:`.gate_shift`: GSM's ``tanh`` gate, gating, residual and both temporal shifts;
* :mod:`.temporal_mix`: GTA's learned T x T mixing of frames per channel group (single, multi-head,
  cross-channel multi-head);
* :mod:`.relational`: RSA's per-position product chain (relational kernel ``q (rel + P1)`` applied
  to the context ``F_V^T (G(V) + I)``).

Dispatch (:func:`use_triton`), from a block's ``kernel`` option:

* ``"torch"``: always the PyTorch path;
* ``"auto"`` (default): PyTorch, for now on every device. The kernels are exact through Triton's
  interpreter and compile for sm_90, but they have never run on a GPU nor been timed against the
  PyTorch path there; ``auto`` switches to them on CUDA only once ``benchmarks/gpu.py`` measures them
  faster and the ``cuda`` tests pass on a GPU (:data:`AUTO_USES_TRITON_ON_CUDA`);
* ``"triton"``: Triton; on a CUDA tensor the compiled kernels, on a CPU tensor Triton's interpreter,
  which must be switched on with ``TRITON_INTERPRET=1`` (otherwise a one-line ConfigError; the
  interpreter is slow and meant for tests).

While a graph is captured (``torch.compile``, tracing, ONNX export) every op takes its PyTorch path
whatever the option: the compilers see plain tensor ops they can fuse themselves, and no graph break
comes from an opaque autograd function.

The interpreter is chosen per launch: a CPU tensor launches an ``InterpretedFunction`` built from the
same Python function as the compiled kernel, so importing this package never depends on
``TRITON_INTERPRET`` (``triton.jit`` reads it when it decorates).
"""

from __future__ import annotations

import functools
import os

import torch

from ...errors import ConfigError
from .._attention import capturing_graph

KERNEL_CHOICES = ("auto", "triton", "torch")

#: Whether ``kernel: auto`` runs the Triton kernels on CUDA. False until a GPU run verifies them (the
#: ``cuda``-marked tests of tests/blocks/test_triton_kernels.py) and measures them faster than the
#: PyTorch path (``benchmarks/gpu.py``'s ``<label> triton`` rows); no GPU was available when they were
#: written, and an unverified kernel must not become what users get by default.
AUTO_USES_TRITON_ON_CUDA = False


@functools.cache
def triton_available() -> bool:
    """True when ``triton`` imports (it is only shipped for some platforms)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # ImportError, or a broken install raising anything else at import
        return False
    return True


def interpreter_enabled() -> bool:
    """``TRITON_INTERPRET`` is set to a true value (Triton's own reading of the variable)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def check_kernel_choice(block: str, kernel: str) -> str:
    if kernel not in KERNEL_CHOICES:
        raise ConfigError(f"block {block!r}: kernel must be one of {', '.join(KERNEL_CHOICES)}, got {kernel!r}")
    return kernel


def use_triton(block: str, kernel: str, tensor: torch.Tensor) -> bool:
    """Whether block ``block`` with option ``kernel`` runs its fused op on ``tensor`` with Triton."""
    if kernel == "torch" or capturing_graph():
        return False
    if kernel == "auto":
        return AUTO_USES_TRITON_ON_CUDA and tensor.is_cuda and triton_available()
    if not triton_available():
        raise ConfigError(f"block {block!r}: kernel='triton' but triton does not import here; use kernel='auto' "
                          "or 'torch'")
    if tensor.is_cuda or (tensor.device.type == "cpu" and interpreter_enabled()):
        return True
    raise ConfigError(f"block {block!r}: kernel='triton' needs a CUDA tensor (got {tensor.device.type}), or "
                      "TRITON_INTERPRET=1 to run Triton's interpreter on the CPU; use kernel='auto' or 'torch'")


def launcher(jitted):
    """The kernel to launch for tensors on ``device``: the compiled one on CUDA, an interpreted one on
    the CPU (built once from the same Python function, :class:`_Interpreted`)."""
    cache: dict[str, object] = {}

    def pick(device: torch.device):
        if device.type != "cpu":
            return jitted
        if "cpu" not in cache:
            cache["cpu"] = _Interpreted(jitted)
        return cache["cpu"]

    return pick


class _Interpreted:
    """``kernel[grid](*args)`` through Triton's interpreter, whether or not ``TRITON_INTERPRET`` was set
    when ``triton`` was imported.

    Triton decides at decoration time: with the variable unset, ``triton.jit`` gives compiled
    ``JITFunction`` s, and so do Triton's own library functions written in Triton (``tl.sum`` and the
    other reductions), decorated when ``triton.language`` is imported. An interpreted kernel calling
    one of those hits ``JITFunction.__call__`` ("Cannot call @triton.jit'd outside of the scope of a
    kernel"). So while an interpreted kernel runs, a ``JITFunction`` called from it runs interpreted as
    well (what it would be had the variable been set at import), with the interpreter's patches of
    ``triton.language`` undone after each such call (Triton leaves them in place after a nested call,
    which would break later compilations in the process); ``JITFunction.__call__`` is restored after
    the launch. CPU tensors only (tests); not thread-safe."""

    _nested: dict = {}

    def __init__(self, jitted):
        from triton.runtime.interpreter import InterpretedFunction

        self.kernel = jitted if isinstance(jitted, InterpretedFunction) else InterpretedFunction(jitted.fn)

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            from triton.runtime.interpreter import InterpretedFunction, _patch_lang
            from triton.runtime.jit import JITFunction

            nested = _Interpreted._nested

            def call(self, *a, **k):
                # InterpretedFunction.__call__ would patch triton.language for the interpreter and never
                # undo it (Triton 3.7), which breaks every later compilation in this process (our
                # kernels on CUDA, inductor's): patch, run the rewritten function, restore
                if self.fn not in nested:
                    nested[self.fn] = InterpretedFunction(self.fn)
                scope = _patch_lang(self.fn)
                try:
                    return nested[self.fn].rewrite()(*a, **k)
                finally:
                    scope.restore()

            original = JITFunction.__call__
            JITFunction.__call__ = call
            try:
                return self.kernel[grid](*args, **kwargs)
            finally:
                JITFunction.__call__ = original

        return launch


def acc_dtype(dtype: torch.dtype):
    """The accumulation dtype of a kernel for inputs of ``dtype``: float64 stays float64, else float32."""
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


__all__ = ["KERNEL_CHOICES", "check_kernel_choice", "interpreter_enabled", "triton_available", "use_triton"]
