"""Seeing inside the models: the papers' figures for any model and video (``docs/visualize.md``).

    from videoattn.visualize import visualize
    visualize("attention", "configs/x.yaml", "work/x/best.pt", "clip.mp4", queries=["4,112,112"], out="fig")

Capture is a recording context of forward pre-hooks (:func:`record_inputs`); attention weights are
recomputed from the blocks' own projections for the queried positions only (:mod:`.maps`); nothing
changes what a model computes.
"""

from __future__ import annotations

from .api import KINDS, parse_query, visualize
from .capture import block_summary, record_inputs

__all__ = ["KINDS", "block_summary", "parse_query", "record_inputs", "visualize"]
