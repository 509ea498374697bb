"""One figure function per kind of ``videoattn visualize`` that reads a model and a clip.

Each takes the model (eval mode), a :class:`~videoattn.visualize.loading.Clip`, the output folder and
kind-specific options, runs the model once on the clip inside :func:`record_inputs`, and writes its
PNG(s). A kind the model has no block for raises :class:`~videoattn.errors.ConfigError` naming the
blocks the model does have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..blocks.bat import BATBase
from ..blocks.factorised import SpatialSelfAttention, TemporalSelfAttention
from ..blocks.gsm import FrameSelfAttention, GateShift
from ..blocks.gta import GlobalTemporalAttention
from ..blocks.non_local import NonLocalBlock
from ..blocks.rnl import RegionNonLocalBlock
from ..errors import ConfigError
from . import maps
from .capture import ATTENTION_TYPES, block_summary, find_modules, record_inputs
from .figures import Row, clip_frame_index, draw_rows, region_overlay
from .loading import Clip

__all__ = ["attention_figure", "bat_figure", "gta_matrices_figure", "gta_regions_figure", "run_with_capture"]

Query = tuple[int, int, int]


def _require(model: nn.Module, types: tuple[type[nn.Module], ...], kind: str, needs: str,
             select: str | None) -> list[tuple[str, nn.Module]]:
    found = find_modules(model, types, select)
    if not found:
        where = f" whose path contains {select!r}" if select else ""
        raise ConfigError(f"visualize {kind}: the model has no {needs}{where}; it has {block_summary(model)}")
    return found


def run_with_capture(model: nn.Module, clip: Clip, types: tuple[type[nn.Module], ...],
                     select: str | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run ``model`` on the clip once, returning the captured block inputs and the logits."""
    with record_inputs(model, types, select) as records, torch.no_grad():
        logits = model(clip.video)
    return records, logits[0]


def _prediction(logits: torch.Tensor, classes: Sequence[str]) -> str:
    probs = logits.softmax(-1)
    top = int(probs.argmax())
    name = classes[top] if top < len(classes) else f"class {top}"
    return f"predicted: {name} ({100 * float(probs[top]):.0f}%)"


def _block_position(query: Query, clip: Clip, x: torch.Tensor) -> tuple[int, int, int]:
    frames, height, width = clip.frames.shape[:3]
    return maps.grid_position(query, (frames, height, width), tuple(x.shape[2:]))


def _unfold(query: Query, clip: Clip, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """The input holding the query and the query's position in it. The ``decoupled`` composite runs a
    block without its own scope on folded clips: frames in the batch ``(T', C, 1, H, W)`` (spatial part)
    or positions in the batch ``(H'W', C, T', 1, 1)`` (temporal part); the clip is one, so the batch is
    the folds."""
    if x.shape[0] == 1:
        return x, _block_position(query, clip, x)
    frames, height, width = clip.frames.shape[:3]
    if x.shape[2] == 1:  # frames folded into the batch
        fold = clip_frame_index(query[0], frames, x.shape[0])
        return x[fold:fold + 1], _block_position(query, clip, x)
    rows = max(1, round(math.sqrt(x.shape[0] * height / width)))  # positions folded: same aspect as the clip
    columns = x.shape[0] // rows
    if rows * columns != x.shape[0]:
        raise ConfigError(f"visualize attention: cannot tell the {x.shape[0]} folded positions of a block input "
                          f"of shape {tuple(x.shape)} apart (expected an H' x W' grid shaped like the clip)")
    _, y, column = maps.grid_position(query, (frames, height, width), (1, rows, columns))
    fold = y * columns + column
    return x[fold:fold + 1], (clip_frame_index(query[0], frames, x.shape[2]), 0, 0)


def _mark(query: Query, t: int) -> list:
    return [(query[1], query[2]) if i == query[0] else None for i in range(t)]


def _per_frame(volume: np.ndarray, clip_frames: int) -> list[np.ndarray]:
    """A ``(T', h, w)`` map as one ``(h, w)`` map per clip frame."""
    return [volume[clip_frame_index(t, clip_frames, volume.shape[0])] for t in range(clip_frames)]


def attention_figure(model: nn.Module, clip: Clip, out: Path, queries: Sequence[Query],
                     select: str | None = None) -> list[Path]:
    """NL's spatio-temporal attention against SA's spatial + TA's/GTA's temporal attention (GTA Fig. 1,
    7), RNL's attention for every query and block (kernel size in the label; RNL Fig. 1, 4, 5), SA-GSM's
    spatial attention per frame, and GSM's gates (``gsm_gates.png``)."""
    found = _require(model, ATTENTION_TYPES, "attention", "attention block (nl, dnl, tape, gta, rnl, sa_gsm, gsm)",
                     select)
    records, logits = run_with_capture(model, clip, ATTENTION_TYPES, select)
    modules = dict(found)
    num_frames = clip.frames.shape[0]
    rows: list[Row] = []
    gate_rows: list[Row] = []
    gta_temporal = {name: m for name, m in found if isinstance(m, GlobalTemporalAttention)}
    ta_blocks = {name: m for name, m in found if isinstance(m, TemporalSelfAttention)}
    for query in queries:
        marks = _mark(query, num_frames)
        qtext = f"query t={query[0]} y={query[1]} x={query[2]}"
        for name, module in modules.items():
            if name not in records:
                continue
            x, position = _unfold(query, clip, records[name])
            if isinstance(module, NonLocalBlock):
                volume = maps.nl_attention(module, x, position)
                rows.append(Row(f"{name}\nNL ({module.mode})\n{qtext}", _per_frame(volume, num_frames), marks))
            elif isinstance(module, RegionNonLocalBlock):
                volume = maps.rnl_attention(module, x, position)
                kernel = "x".join(str(k) for k in module.kernel_size)
                rows.append(Row(f"{name}\nRNL {kernel} ({module.form})\n{qtext}",
                                _per_frame(volume, num_frames), marks))
            elif isinstance(module, SpatialSelfAttention):
                spatial = maps.factorised_attention(module, x, position)
                frame_maps: list = [None] * num_frames
                for t in range(num_frames):
                    if clip_frame_index(t, num_frames, x.shape[2]) == position[0]:
                        frame_maps[t] = spatial
                temporal, temporal_label = None, ""
                partner = _temporal_partner(name, ta_blocks, gta_temporal)
                if partner is not None:
                    partner_name, partner_module = partner
                    if isinstance(partner_module, TemporalSelfAttention) and partner_name in records:
                        px = records[partner_name]
                        temporal = maps.factorised_attention(partner_module, px, _block_position(query, clip, px))
                        temporal_label = "TA weights"
                    elif isinstance(partner_module, GlobalTemporalAttention):
                        matrices = maps.gta_matrices(partner_module)
                        matrix = matrices.get("pixel", matrices.get("region"))
                        temporal = matrix[min(position[0], matrix.shape[0] - 1)]
                        temporal_label = "GTA |M_P| row"
                titles = ([f"frame {t}: {temporal[clip_frame_index(t, num_frames, len(temporal))]:.2f}"
                           for t in range(num_frames)] if temporal is not None else [])
                rows.append(Row(f"{name}\nSA\n{qtext}", frame_maps, marks, temporal, temporal_label, titles))
            elif isinstance(module, TemporalSelfAttention):
                if _has_spatial_partner(name, modules):
                    continue  # drawn in its SA's row
                weights = maps.factorised_attention(module, x, position)
                rows.append(Row(f"{name}\nTA\n{qtext}", [None] * num_frames, marks, weights, "TA weights"))
            elif isinstance(module, GlobalTemporalAttention):
                if _has_spatial_partner(name, modules):
                    continue  # drawn in its SA's row
                matrices = maps.gta_matrices(module)
                matrix = matrices.get("pixel", matrices.get("region"))
                weights = matrix[min(position[0], matrix.shape[0] - 1)]
                rows.append(Row(f"{name}\nGTA (no SA)\n{qtext}", [None] * num_frames, marks, weights,
                                "GTA |M_P| row"))
            elif isinstance(module, FrameSelfAttention):
                volume = maps.frame_attention(module, x, position)
                rows.append(Row(f"{name}\nSA-GSM frame attention\nquery y={query[1]} x={query[2]}",
                                _per_frame(volume, num_frames),
                                [(query[1], query[2])] * num_frames))
    for name, module in modules.items():
        if isinstance(module, GateShift) and name in records:
            gates = maps.gsm_gates(module, records[name])
            first, second = ("backward", "forward") if module.released_order else ("forward", "backward")
            for half, direction in enumerate((first, second)):
                gate_rows.append(Row(f"{name}\ngate, half {half + 1}\n(shifted {direction})",
                                     _per_frame(gates[half], num_frames), cmap="RdBu_r", vmin=-1.0, vmax=1.0,
                                     alpha=0.7))
    prediction = _prediction(logits, clip.classes)
    written = []
    if rows:
        written.append(draw_rows(clip.frames, rows, out / "attention.png",
                                 f"Attention of each block for the query (+); red = more weight. {prediction}"))
    if gate_rows:
        written.append(draw_rows(clip.frames, gate_rows, out / "gsm_gates.png",
                                 f"GSM gates tanh(W*X): red > 0 (feature shifted), blue < 0 (shifted, negated). "
                                 f"{prediction}"))
    return written


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _temporal_partner(name: str, ta_blocks: dict, gta_blocks: dict):
    """The temporal half of the decoupled block whose spatial half is ``name`` (DNL/TAPE: TA; GTA: GTA)."""
    parent = _parent(name)
    for candidates in (ta_blocks, gta_blocks):
        for other, module in candidates.items():
            if _parent(other) == parent:
                return other, module
    return None


def _has_spatial_partner(name: str, modules: dict) -> bool:
    parent = _parent(name)
    return any(isinstance(m, SpatialSelfAttention) and _parent(other) == parent for other, m in modules.items())


def gta_matrices_figure(model: nn.Module, out: Path, select: str | None = None) -> list[Path]:
    """GTA Fig. 5: every GTA block's learned pixel and region matrices (the demo's drawing)."""
    from ..analysis.plots import plot_temporal_matrices

    found = _require(model, (GlobalTemporalAttention,), "gta-matrices", "GTA block", select)
    matrices = {name.removesuffix(".temporal"): maps.gta_matrices(module) for name, module in found}
    return [plot_temporal_matrices(matrices, out / "gta_matrices.png")]


def gta_regions_figure(model: nn.Module, clip: Clip, out: Path, select: str | None = None,
                       top: int = 3) -> list[Path]:
    """GTA Fig. 3, 6: for every frame, the ``top`` regions of Region GTA with the largest total
    assignment ``sum_p |G_R(t)[k, p]|``, as coloured masks (one colour per region index)."""
    from ..analysis.plots import pyplot

    found = [(n, m) for n, m in _require(model, (GlobalTemporalAttention,), "gta-regions", "GTA block", select)
             if m.region_value is not None]
    if not found:
        raise ConfigError(f"visualize gta-regions: the model's GTA blocks have no Region GTA branch "
                          f"(region=False); it has {block_summary(model)}")
    records, logits = run_with_capture(model, clip, (GlobalTemporalAttention,), select)
    num_frames = clip.frames.shape[0]
    # tab20's dark colours, then its light ones, red last: regions 0-8 get nine distinct hues (tab20 in its
    # own order pairs each hue with its light shade, so regions 2k and 2k+1 looked alike), and red, the
    # colour of attention maps (and of the demo's moving object), is used only beyond 18 regions
    tab20 = np.asarray(pyplot().get_cmap("tab20").colors)
    order = [i for i in range(0, 20, 2) if i != 6] + [i for i in range(1, 20, 2) if i != 7] + [6, 7]
    colours = tab20[order]
    rows = []
    for name, module in found:
        assignment = maps.gta_regions(module, records[name])  # (T', h, w, K)
        strength = np.abs(assignment).sum(axis=(1, 2))  # (T', K)
        overlays, titles, shown = [], [], set()
        for t in range(num_frames):
            tt = clip_frame_index(t, num_frames, assignment.shape[0])
            chosen = [int(k) for k in np.argsort(-strength[tt])[:top]]
            overlays.append(region_overlay(assignment[tt], chosen, colours[np.arange(max(chosen) + 1) % len(colours)]))
            titles.append(f"frame {t}: " + " ".join(f"r{k}" for k in chosen))
            shown.update(chosen)
        legend = [(f"region r{k}", tuple(float(v) for v in colours[k % len(colours)])) for k in sorted(shown)]
        rows.append(Row(f"{name.removesuffix('.temporal')}\nK={assignment.shape[-1]} regions", overlays, titles=titles,
                        rgba=True, legend=legend))
    return [draw_rows(clip.frames, rows, out / "gta_regions.png",
                      f"Region GTA: the {top} strongest regions of each frame (colour = region index, "
                      f"opacity: |G_R| from 30% to 100% of the region's peak). {_prediction(logits, clip.classes)}")]


def bat_figure(model: nn.Module, clip: Clip, out: Path, select: str | None = None) -> list[Path]:
    """BAT eq. 8 / Fig. 4: the re-projected attention ``W = P^T A Q^T`` of every group, per frame."""
    found = [(n, m) for n, m in _require(model, (BATBase,), "bat", "BAT block", select) if m.k]
    if not found:
        raise ConfigError(f"visualize bat: the model's BAT blocks have k=0 (no attention groups); it has "
                          f"{block_summary(model)}")
    records, logits = run_with_capture(model, clip, (BATBase,), select)
    num_frames = clip.frames.shape[0]
    rows = []
    for name, module in found:
        weights = maps.bat_attention(module, records[name])  # (T', k, H, W)
        for group in range(weights.shape[1]):
            per_group = weights[:, group]
            rows.append(Row(f"{name}\ngroup {group}", _per_frame(per_group, num_frames)))
    return [draw_rows(clip.frames, rows, out / "bat.png",
                      f"BAT re-projected attention W = P^T A Q^T per group (eq. 8); red = more weight. "
                      f"{_prediction(logits, clip.classes)}")]
