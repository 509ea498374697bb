"""Clip transforms: uint8 ``(T, H, W, C)`` frames in, normalised float ``(C, T, H, W)`` out.

Every spatial operation is drawn once per clip and applied to all its frames (a clip is one
object moving through time; per-frame crops would invent motion). Geometry is computed as a crop box
in the coordinates of the *resized* frame (shorter side ``scale_size``, or a fixed ``(h, w)`` such
as TSN's 240x320); the box is mapped back to the decoded frame, which is cropped and resized to the
output size in one interpolation. This equals resize-then-crop up to interpolation rounding and
costs one resize instead of two.

Recipes (``docs/data.md``):

* ``crop="multiscale"`` -- TSN multi-scale crop (Wang et al. 2016; GTA appendix for SSv1/v2 with
  240x320 frames; BAT section 4.1 uses TSN's augmentation too): crop width and height each chosen
  from ``scales`` x shorter side
  (1, .875, .75, .66), their scale indices differing by at most ``max_distort``; position one of
  the 5 (or 13 with ``more_fix_crop``) fixed positions, then resized to ``size``.
* ``crop="jitter"`` -- scale jittering of the Non-local network, which RNL section IV follows ("224x224
  randomly cropped from a resized image"): shorter side uniform in ``jitter_range`` (default 256..320
  for 224 crops), random ``size`` x ``size`` crop.
* ``crop="random_resized"`` -- Inception-style random resized crop (area, aspect ratio).
* Evaluation: shorter side to ``scale_size``, then 1 centre crop, 3 crops along the longer side
  (the "three crops" of NL/RNL/BAT testing; with ``size == scale_size`` they cover the frame
  fully-convolutionally), 5 crops (corners + centre) or 10 crops (those 5 and their flips; the 5
  again, unmirrored, where the dataset's flip policy forbids mirroring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Box",
    "resized_shape",
    "multiscale_crop_box",
    "jitter_crop_box",
    "random_resized_crop_box",
    "center_crop_box",
    "three_crop_boxes",
    "five_crop_boxes",
    "crop_and_resize",
    "pixel_box",
    "resize_patch",
    "hflip",
    "color_jitter",
    "normalize",
    "ClipTransform",
    "build_clip_transform",
    "CROP_MODES",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_MODES = ("multiscale", "jitter", "random_resized")


@dataclass(frozen=True)
class Box:
    """A crop box ``(top, left, height, width)`` in some frame's pixel coordinates (floats allowed)."""

    top: float
    left: float
    height: float
    width: float

    def scaled(self, scale_y: float, scale_x: float) -> Box:
        return Box(self.top * scale_y, self.left * scale_x, self.height * scale_y, self.width * scale_x)


def resized_shape(height: int, width: int, scale_size) -> tuple[int, int]:
    """Frame shape after resizing: shorter side to ``scale_size`` (int), or ``(h, w)`` exactly."""
    if isinstance(scale_size, (tuple, list)):
        return int(scale_size[0]), int(scale_size[1])
    if height <= width:
        return int(scale_size), max(1, round(width * scale_size / height))
    return max(1, round(height * scale_size / width)), int(scale_size)


def _fixed_offsets(height: int, width: int, crop_h: int, crop_w: int, more: bool) -> list[tuple[int, int]]:
    step_y, step_x = (height - crop_h) / 4, (width - crop_w) / 4
    grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
    if more:
        grid += [(2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
    return [(round(gy * step_y), round(gx * step_x)) for gy, gx in grid]


def multiscale_crop_box(height: int, width: int, size: int, rng: np.random.Generator,
                        scales=(1.0, 0.875, 0.75, 0.66), max_distort: int = 1, fix_crop: bool = True,
                        more_fix_crop: bool = True) -> Box:
    """TSN's multi-scale crop box inside a ``height`` x ``width`` frame (output resized to ``size``)."""
    base = min(height, width)
    sizes = [int(base * s) for s in scales]
    sizes = [size if abs(s - size) < 3 else s for s in sizes]  # snap near-equal sizes, as TSN does
    pairs = [(h, w) for i, h in enumerate(sizes) for j, w in enumerate(sizes) if abs(i - j) <= max_distort]
    crop_h, crop_w = pairs[int(rng.integers(len(pairs)))]
    crop_h, crop_w = min(crop_h, height), min(crop_w, width)
    if fix_crop:
        offsets = _fixed_offsets(height, width, crop_h, crop_w, more_fix_crop)
        top, left = offsets[int(rng.integers(len(offsets)))]
    else:
        top = int(rng.integers(height - crop_h + 1))
        left = int(rng.integers(width - crop_w + 1))
    return Box(top, left, crop_h, crop_w)


def jitter_crop_box(height: int, width: int, size: int, rng: np.random.Generator,
                    jitter_range: tuple[int, int] = (256, 320)) -> tuple[tuple[int, int], Box]:
    """Scale jitter: shorter side uniform in ``jitter_range``; a random ``size`` crop of that frame.

    Returns the jittered frame shape and the box in its coordinates.
    """
    short = int(rng.integers(jitter_range[0], jitter_range[1] + 1))
    shape = resized_shape(height, width, short)
    crop_h, crop_w = min(size, shape[0]), min(size, shape[1])
    top = int(rng.integers(shape[0] - crop_h + 1))
    left = int(rng.integers(shape[1] - crop_w + 1))
    return shape, Box(top, left, crop_h, crop_w)


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            area_range=(0.08, 1.0), ratio_range=(3 / 4, 4 / 3)) -> Box:
    """Inception-style crop: area fraction and aspect ratio (log-uniform) random; centre crop fallback."""
    area = height * width
    log_ratio = (math.log(ratio_range[0]), math.log(ratio_range[1]))
    for _ in range(10):
        target = area * rng.uniform(*area_range)
        ratio = math.exp(rng.uniform(*log_ratio))
        crop_w = round(math.sqrt(target * ratio))
        crop_h = round(math.sqrt(target / ratio))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(height - crop_h + 1))
            left = int(rng.integers(width - crop_w + 1))
            return Box(top, left, crop_h, crop_w)
    side = min(height, width)
    return Box((height - side) // 2, (width - side) // 2, side, side)


def center_crop_box(height: int, width: int, size: int) -> Box:
    crop_h, crop_w = min(size, height), min(size, width)
    return Box((height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w)


def three_crop_boxes(height: int, width: int, size: int) -> list[Box]:
    """Three ``size`` crops along the longer side: start, centre, end."""
    crop_h, crop_w = min(size, height), min(size, width)
    if width >= height:
        lefts = [0, (width - crop_w) // 2, width - crop_w]
        return [Box((height - crop_h) // 2, left, crop_h, crop_w) for left in lefts]
    tops = [0, (height - crop_h) // 2, height - crop_h]
    return [Box(top, (width - crop_w) // 2, crop_h, crop_w) for top in tops]


def five_crop_boxes(height: int, width: int, size: int) -> list[Box]:
    """Four corners and the centre."""
    crop_h, crop_w = min(size, height), min(size, width)
    corners = [(0, 0), (0, width - crop_w), (height - crop_h, 0), (height - crop_h, width - crop_w)]
    return [Box(t, l, crop_h, crop_w) for t, l in corners] + [center_crop_box(height, width, size)]


def crop_and_resize(frames: np.ndarray, box: Box, out_size: tuple[int, int]) -> torch.Tensor:
    """Crop ``box`` (decoded-frame coordinates) from uint8 ``(T, H, W, C)``; float ``(T, C, h, w)`` 0..255."""
    if frames.ndim != 4:
        raise ConfigError(f"frames must be (T, H, W, C), got shape {tuple(frames.shape)}")
    top, bottom, left, right = pixel_box(box, *frames.shape[1:3])
    patch = torch.from_numpy(np.ascontiguousarray(frames[:, top:bottom, left:right]))
    return resize_patch(patch.permute(0, 3, 1, 2).float(), out_size)


def pixel_box(box: Box, height: int, width: int) -> tuple[int, int, int, int]:
    """The integer rows and columns ``(top, bottom, left, right)`` a crop of ``box`` reads (at least one
    pixel, inside a ``height`` x ``width`` frame)."""
    top = min(max(int(round(box.top)), 0), height - 1)
    left = min(max(int(round(box.left)), 0), width - 1)
    bottom = min(max(int(round(box.top + box.height)), top + 1), height)
    right = min(max(int(round(box.left + box.width)), left + 1), width)
    return top, bottom, left, right


def resize_patch(patch: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Float ``(T, C, h, w)`` 0..255 -> ``(T, C, *out_size)``: antialiased bilinear, clamped to 0..255.

    The one resize of both transform paths (worker CPU and ``data.transforms_on: device``)."""
    if tuple(patch.shape[-2:]) != tuple(out_size):
        patch = F.interpolate(patch, size=tuple(out_size), mode="bilinear", align_corners=False,
                              antialias=True)
    return patch.clamp_(0, 255)


def hflip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror the last (width) axis."""
    return clip.flip(-1)


def _grayscale(clip: torch.Tensor) -> torch.Tensor:
    # clip: (T, C, H, W) RGB 0..255
    return (0.299 * clip[:, 0:1] + 0.587 * clip[:, 1:2] + 0.114 * clip[:, 2:3])


def color_jitter(clip: torch.Tensor, rng: np.random.Generator, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0) -> torch.Tensor:
    """Brightness/contrast/saturation/hue jitter with one draw per clip, in random order.

    Hue is rotated in YIQ space (an approximation of HSV hue shift that avoids a per-pixel HSV trip).
    """
    factors = {
        "brightness": rng.uniform(1 - brightness, 1 + brightness) if brightness else None,
        "contrast": rng.uniform(1 - contrast, 1 + contrast) if contrast else None,
        "saturation": rng.uniform(1 - saturation, 1 + saturation) if saturation else None,
        "hue": rng.uniform(-hue, hue) if hue else None,
    }
    for name in rng.permutation(list(factors)):
        value = factors[name]
        if value is None:
            continue
        if name == "brightness":
            clip = clip * value
        elif name == "contrast":
            clip = (clip - _grayscale(clip).mean()) * value + _grayscale(clip).mean()
        elif name == "saturation":
            gray = _grayscale(clip)
            clip = (clip - gray) * value + gray
        else:
            angle = value * 2 * math.pi
            cos, sin = math.cos(angle), math.sin(angle)
            to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
            rotate = torch.tensor([[1.0, 0, 0], [0, cos, -sin], [0, sin, cos]])
            matrix = torch.linalg.inv(to_yiq) @ rotate @ to_yiq
            clip = torch.einsum("ij,tjhw->tihw", matrix, clip)
        clip = clip.clamp(0, 255)
    return clip


def normalize(clip: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """``(T, C, H, W)`` 0..255 -> ``(C, T, H, W)`` with ``(x / 255 - mean) / std``."""
    mean_t = torch.tensor(mean, dtype=clip.dtype).view(1, -1, 1, 1) * 255.0
    std_t = torch.tensor(std, dtype=clip.dtype).view(1, -1, 1, 1) * 255.0
    return ((clip - mean_t) / std_t).permute(1, 0, 2, 3).contiguous()


@dataclass
class ClipTransform:
    """The whole spatial pipeline of one split; call with decoded frames, a generator and a flip flag.

    Training returns one ``(C, T, size, size)`` clip; evaluation returns a list of ``num_crops``
    clips (ten-crop: 5 crops then their mirrors, or the 5 again with ``mirror_views=False``). ``flip``
    and ``mirror_views`` are decided by the dataset (from its flip policy, see ``videoattn.data.dataset``).
    """

    size: int = 224
    scale_size: int | tuple[int, int] = 256
    train: bool = True
    crop: str = "multiscale"
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_distort: int = 1
    fix_crop: bool = True
    more_fix_crop: bool = True
    jitter_range: tuple[int, int] | None = None
    area_range: tuple[float, float] = (0.08, 1.0)
    color: tuple[float, float, float, float] | None = None  # brightness, contrast, saturation, hue
    num_crops: int = 1
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.crop not in CROP_MODES:
            raise ConfigError(f"crop must be one of {CROP_MODES}, got {self.crop!r}")
        if self.num_crops not in (1, 3, 5, 10):
            raise ConfigError(f"num_crops must be 1, 3, 5 or 10, got {self.num_crops}")
        if self.size < 1:
            raise ConfigError(f"size must be positive, got {self.size}")

    def _finish(self, clip: torch.Tensor, flip: bool, rng: np.random.Generator | None) -> torch.Tensor:
        if self.color is not None and rng is not None:
            clip = color_jitter(clip, rng, *self.color)
        if flip:
            clip = hflip(clip)
        return normalize(clip, self.mean, self.std)

    def train_box(self, height: int, width: int, rng: np.random.Generator | None) -> Box:
        """The random crop of a training clip, in the coordinates of its ``height`` x ``width`` decoded
        frames: the draws ``__call__`` makes before cropping (``data.transforms_on: device`` makes
        them in the worker and crops on the device)."""
        if rng is None:
            raise ConfigError("a training transform needs a random generator")
        if self.crop == "jitter":
            low = self.jitter_range or (round(self.size * 256 / 224), round(self.size * 320 / 224))
            shape, box = jitter_crop_box(height, width, self.size, rng, low)
        else:
            shape = resized_shape(height, width, self.scale_size)
            if self.crop == "multiscale":
                box = multiscale_crop_box(shape[0], shape[1], self.size, rng, self.scales,
                                          self.max_distort, self.fix_crop, self.more_fix_crop)
            else:
                box = random_resized_crop_box(shape[0], shape[1], rng, self.area_range)
        return box.scaled(height / shape[0], width / shape[1])

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None, flip: bool = False,
                 mirror_views: bool = True):
        """Training: one clip (mirrored if ``flip``). Evaluation: the list of crops; with ten crops
        the last five are the first five mirrored, or, with ``mirror_views=False`` (flip policies
        that must not mirror, see ``videoattn.data.dataset``), the first five again."""
        height, width = frames.shape[1:3]
        out = (self.size, self.size)
        if self.train:
            box = self.train_box(height, width, rng)
            return self._finish(crop_and_resize(frames, box, out), flip, rng)
        shape = resized_shape(height, width, self.scale_size)
        if self.num_crops == 1:
            boxes = [center_crop_box(shape[0], shape[1], self.size)]
        elif self.num_crops == 3:
            boxes = three_crop_boxes(shape[0], shape[1], self.size)
        else:
            boxes = five_crop_boxes(shape[0], shape[1], self.size)
        scale_y, scale_x = height / shape[0], width / shape[1]
        out = tuple(min(self.size, s) for s in shape)
        views = [self._finish(crop_and_resize(frames, b.scaled(scale_y, scale_x), out), flip, None)
                 for b in boxes]
        if self.num_crops == 10:
            views += [v.flip(-1) for v in views] if mirror_views else list(views)
        return views


def build_clip_transform(split: str, size: int = 224, scale_size=None, num_crops: int = 1,
                         crop: str = "multiscale", color=None, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                         **options) -> ClipTransform:
    """The transform of ``split`` ("train" random; "val"/"test" deterministic crops)."""
    if scale_size is None:
        scale_size = round(size * 256 / 224)
    train = split == "train"
    return ClipTransform(size=size, scale_size=scale_size, train=train, crop=crop,
                         color=color if train else None, num_crops=1 if train else num_crops,
                         mean=tuple(mean), std=tuple(std), **options)
