"""The backbone protocol: named insertion sites, frame bookkeeping and pretrained-loading hints.

Everything outside a backbone (the recognizer, insertion plans, parameter/FLOP counting and
pretrained loading) talks to it only through :class:`VideoBackbone`:

* ``forward(x)`` maps clips ``(N, 3, T, H, W)`` (or images ``(N, 3, H, W)``) to frame-batched
  features ``(N*T', C, h, w)`` and the T' left after temporal pooling;
* ``out_channels`` is C of those features;
* ``stage_names`` lists the backbone's stages in order (``res2``..``res5`` for ResNets), the names an
  insertion plan uses; a stage holds numbered *units* (residual blocks, inception modules);
* ``sites(num_frames)`` lists every place a block can go, as :class:`Site` records: the stage and
  unit, the site ``kind``, the module path of its slot, the channels and frames the block sees there;
* ``set_site(site, module)`` puts a module there; the backbone runs it in the public
  ``(N, C, T, H, W)`` layout (:func:`run_video_module`);
* ``named_plans`` adds backbone-specific layouts to the generic ``all``/``none`` (``five_block``);
* ``adapt_pretrained_state(state)`` maps a checkpoint's names and shapes to the backbone's before
  matching (identity by default; BN-Inception maps the released flat names);
* ``pretrained_head_prefix`` names the classifier keys a checkpoint may carry, and
  ``pretrained_skip_prefixes()`` the modules whose checkpoint tensors must not be loaded (replaced
  modules and units that train from scratch).

Site kinds are the backbone's to define; a site whose ``replaces`` is True takes the place of an
existing module (its slot is that module's path) and may change channels and spatial stride.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError, ShapeError


@dataclass(frozen=True)
class Site:
    """One place in a backbone where a block can be inserted."""

    stage: str  # stage name as plans write it ("res3")
    index: int  # 0-based unit (residual block, inception module) index inside the stage
    kind: str  # site kind ("after_block", "before_conv1", "before_residual", "replace_conv2", ...)
    path: str  # module path of the slot inside the backbone ("layer2.1.after_block")
    unit_path: str  # module path of the unit that holds the slot ("layer2.1")
    in_channels: int  # channels the block receives
    out_channels: int  # channels it must return (== in_channels unless the site replaces a module)
    num_frames: int  # frames the block sees when the model's input has the planned T
    stride: int = 1  # spatial stride the block must apply (replace sites only)
    replaces: bool = False  # the block takes the place of an existing module
    branch: str = ""  # distinguishes several sites of one kind in one unit (e.g. inception branches)

    @property
    def name(self) -> str:
        return ".".join(filter(None, (self.stage, str(self.index), self.branch, self.kind)))


def run_video_module(module: nn.Module, x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Apply a ``(N, C, T, H, W)`` module to a frame-batched ``(N*T, C, H, W)`` tensor.

    The module receives a view (no copy). It may change channels and spatial size (replace sites)
    but not the number of frames.
    """
    if isinstance(module, nn.Identity):
        return x
    batch_frames, channels, height, width = x.shape
    video = x.view(batch_frames // num_frames, num_frames, channels, height, width).transpose(1, 2)
    out = module(video)
    if out.dim() != 5 or out.shape[0] != video.shape[0] or out.shape[2] != num_frames:
        raise ShapeError(
            f"{type(module).__name__} returned shape {tuple(out.shape)} for input {tuple(video.shape)}; "
            f"a block inside a backbone must keep N and T (N={video.shape[0]}, T={num_frames})"
        )
    return out.transpose(1, 2).reshape(batch_frames, out.shape[1], out.shape[3], out.shape[4])


class VideoBackbone(nn.Module):
    """Base class of every backbone (see the module docstring for the protocol).

    Subclasses implement ``forward``, ``stage_names``, ``sites`` and set ``out_channels``; they may
    override :meth:`init_unit_from_scratch` (what "train this unit from scratch" means for them).
    """

    site_kinds: tuple[str, ...] = ()
    unit_name: str = "units"  # what a stage's numbered units are called in messages ("residual blocks")
    named_plans: dict[str, dict[str, object]] = {}
    pretrained_head_prefix: str = "fc."
    out_channels: int

    @property
    def stage_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def sites(self, num_frames: int) -> list[Site]:
        raise NotImplementedError

    def pretrained_skip_prefixes(self) -> list[str]:
        """Module paths (with a trailing dot) whose checkpoint tensors are not loaded."""
        return list(getattr(self, "_pretrained_skip", []))

    def adapt_pretrained_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A checkpoint's state dict with names/shapes mapped to this backbone's (default: unchanged)."""
        return state

    def init_unit_from_scratch(self, site: Site) -> None:
        """Re-initialise the unit holding ``site`` for training from scratch (default: nothing)."""

    def set_site(self, site: Site, module: nn.Module, from_scratch: bool = False) -> None:
        """Put ``module`` at ``site``. An occupied insertion slot is an error (chain blocks instead);
        a replaced module's checkpoint tensors, and with ``from_scratch`` its whole unit's, are
        skipped by pretrained loading."""
        parent_path, _, attribute = site.path.rpartition(".")
        parent = self.get_submodule(parent_path) if parent_path else self
        current = getattr(parent, attribute)
        occupied = getattr(current, "registered_block_name", None) if site.replaces else (
            None if isinstance(current, nn.Identity) else type(current).__name__)
        if occupied:
            raise ConfigError(
                f"two insertions target site {site.name} ({site.path}); put both blocks in one site with "
                f"the 'chain' block, e.g. {{name: chain, options: {{blocks: [first, second]}}}}"
            )
        setattr(parent, attribute, module)
        skip = self.__dict__.setdefault("_pretrained_skip", [])
        if site.replaces:
            skip.append(site.path + ".")
        if from_scratch:
            skip.append(site.unit_path + ".")
            self.init_unit_from_scratch(site)


def resolve_sites(backbone: VideoBackbone, num_frames: int, kind: str) -> list[Site]:
    """All sites of ``kind`` in ``backbone``, or a ConfigError listing the kinds it has."""
    if kind not in backbone.site_kinds:
        raise ConfigError(
            f"{type(backbone).__name__} has no insertion site kind {kind!r}; its kinds are "
            f"{', '.join(backbone.site_kinds)}"
        )
    return [site for site in backbone.sites(num_frames) if site.kind == kind]
