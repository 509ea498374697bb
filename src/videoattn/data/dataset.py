"""The video dataset: annotations + decoder + sampling + transforms, with bad-data substitution.

Determinism: every random choice for item ``index`` in epoch ``epoch`` (TSN offsets, crop, flip,
colour jitter, and which entry replaces a bad one) is drawn from
``numpy.random.default_rng([seed, epoch, index, attempt])``. Nothing depends on worker RNG state or
on which worker serves the item, so any number of workers, and a run resumed at epoch ``e``, give
bit-identical batches. The epoch reaches worker processes with each index (the loader's sampler
yields ``(index, epoch)`` pairs, see :mod:`videoattn.data.loader`), so persistent workers see
``set_epoch`` too.

Bad data: an entry that cannot be used (missing or empty file, not a video, truncated, corrupt
JPEG, too few frames, label outside the class list, any decoder failure) raises
:class:`~videoattn.errors.DataError` internally. With ``strict=False`` the dataset records
``{"path", "reason"}`` in the sample's ``"skipped"`` list and then, for the ``train`` split,
substitutes another entry chosen by the same seeded generator; for ``val``/``test`` it never
substitutes (an evaluation over a different set of videos would be silently wrong) but returns a
*dropped* sample, ``{"dropped": True, "index", "label", "skipped": [{"path", "reason"}]}``, which
:func:`~videoattn.data.loader.collate_samples` moves to the batch's ``"dropped"`` list. With
``strict=True`` the error propagates, naming the file.

A :class:`~videoattn.errors.VideoAttnError` raised while a DataLoader worker produces an item is
returned as ``{"error": error}`` and raised again, unchanged, by the loader in the main process
(:class:`~videoattn.data.loader.VideoLoader`), instead of as a worker traceback.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError, ShapeError, VideoAttnError, unknown_name
from .annotations import FORMATS, VideoRecord, load_annotations
from .cache import CachingDecoder
from .decoders import Decoder, build_decoder, decode_errors_as_data_error
from .sampling import SAMPLING_MODES, sample_views
from .transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform, build_clip_transform, pixel_box

__all__ = [
    "VideoDataset",
    "ImageFolderDataset",
    "build_dataset",
    "build_image_dataset",
    "flip_label_map",
    "remap_view_scores",
    "resolve_flip_policy",
    "summarize_skipped",
    "FLIP_POLICIES",
    "SPLITS",
]

FLIP_POLICIES = ("none", "standard", "skip_left_right", "swap_left_right")
SPLITS = ("train", "val", "test")
#: Formats whose classes are defined by direction ("... from left to right"): ``flip="auto"`` never
#: mirrors their left/right classes (the GTA and RSA recipes for Something-Something v1/v2).
LEFT_RIGHT_FORMATS = ("ssv1", "ssv2")
_LEFT_RIGHT = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def resolve_flip_policy(policy: str, format_name: str, classes: list[str]) -> str:
    """The flip policy ``"auto"`` stands for; any other policy is returned as given (after a check).

    ``auto`` is ``skip_left_right`` for Something-Something (``ssv1``/``ssv2``) and for any dataset
    with a class name containing the word "left" or "right" (e.g. an SS list converted to
    ``frame_list``), so mirroring never turns "left to right" into a mislabelled "right to left";
    otherwise ``standard`` (the two are the same for such datasets anyway: only the recorded name differs).
    """
    if policy not in ("auto", *FLIP_POLICIES):
        raise ConfigError(f"flip must be one of {('auto', *FLIP_POLICIES)}, got {policy!r}")
    if policy != "auto":
        return policy
    if format_name in LEFT_RIGHT_FORMATS or any(_LEFT_RIGHT.search(name) for name in classes):
        return "skip_left_right"
    return "standard"


def flip_label_map(classes: list[str], policy: str) -> list[int | None]:
    """For each class, the label its horizontally mirrored video gets, or None if it must not flip.

    ``standard``: every class keeps its label. ``skip_left_right``: classes whose name contains the
    word "left" or "right" are never flipped (GTA appendix, SSv1/v2). ``swap_left_right``: such
    classes flip to the class whose name has left and right exchanged ("pushing something from left
    to right" <-> "... from right to left"); one without such a twin is not flipped. ``none``: no
    class flips.
    """
    if policy not in FLIP_POLICIES:
        raise ConfigError(f"flip must be one of {FLIP_POLICIES}, got {policy!r}")
    if policy == "none":
        return [None] * len(classes)
    if policy == "standard":
        return list(range(len(classes)))
    lookup = {name: i for i, name in enumerate(classes)}
    mapping: list[int | None] = []
    for label, name in enumerate(classes):
        if not _LEFT_RIGHT.search(name):
            mapping.append(label)
        elif policy == "skip_left_right":
            mapping.append(None)
        else:
            swapped = _LEFT_RIGHT.sub(lambda m: _swap_word(m.group(0)), name)
            mapping.append(lookup.get(swapped))
    return mapping


def _swap_word(word: str) -> str:
    target = "right" if word.lower() == "left" else "left"
    if word.isupper():
        return target.upper()
    if word[0].isupper():
        return target.capitalize()
    return target


def remap_view_scores(scores: torch.Tensor, class_maps: torch.Tensor | None) -> torch.Tensor:
    """Map each view's scores ``(N, V, K)`` back to the classes of the unmirrored video.

    ``class_maps[v, i]`` is the class whose score in view ``v`` is evidence for class ``i``
    (:attr:`VideoDataset.view_class_maps`): a mirrored view of a "left to right" video looks like
    "right to left", so under ``swap_left_right`` its "right to left" score counts for "left to right".
    """
    if class_maps is None:
        return scores
    if scores.ndim != 3 or tuple(scores.shape[1:]) != tuple(class_maps.shape):
        raise ShapeError(f"view scores of shape {tuple(scores.shape)} ({scores.shape[-1]} classes, "
                         f"{scores.shape[1] if scores.ndim == 3 else '?'} views) do not fit the dataset's "
                         f"view class maps for {class_maps.shape[0]} views and {class_maps.shape[1]} classes")
    index = class_maps.to(scores.device).unsqueeze(0).expand(scores.shape[0], -1, -1)
    return scores.gather(2, index)


def summarize_skipped(skipped: list[dict]) -> list[dict]:
    """Unique bad entries with how often they were met: ``[{"path", "reason", "count"}]``."""
    summary: dict[tuple[str, str], int] = {}
    for item in skipped:
        key = (item["path"], item["reason"])
        summary[key] = summary.get(key, 0) + 1
    return [{"path": p, "reason": r, "count": c} for (p, r), c in sorted(summary.items())]


class VideoDataset(torch.utils.data.Dataset):
    """Map-style dataset over :class:`~videoattn.data.annotations.VideoRecord` entries.

    Items are dicts: ``video`` float32 ``(C, T, H, W)`` (or ``(V, C, T, H, W)`` with ``V =
    num_clips * num_crops > 1`` views, clip-major), ``label`` int (``-1`` for unlabelled test
    entries), ``index`` (the entry actually used) and ``skipped`` (bad entries met on the way).
    For ``val``/``test`` a bad entry gives a dropped sample instead (see the module docstring).
    An item may also be asked for as ``(index, epoch)``, which is what the loader's sampler does.
    """

    def __init__(self, records: list[VideoRecord], classes: list[str], *, decoder: Decoder,
                 transform: ClipTransform, split: str = "train", num_frames: int = 8, sampling: str = "tsn",
                 frame_interval: int = 1, num_clips: int = 1, flip: str = "auto",
                 flip_prob: float = 0.5, strict: bool = False, seed: int = 0, min_frames: int = 1,
                 max_substitutions: int = 20, format_name: str = "custom"):
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        if sampling not in SAMPLING_MODES:
            raise ConfigError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
        if num_frames < 1 or frame_interval < 1 or num_clips < 1 or min_frames < 1:
            raise ConfigError(f"num_frames ({num_frames}), frame_interval ({frame_interval}), num_clips "
                              f"({num_clips}) and min_frames ({min_frames}) must be positive")
        if not records:
            raise DataError("the annotation file has no entries")
        self.records = records
        self.classes = list(classes)
        self.decoder = decoder
        self.transform = transform
        self.split = split
        self.num_frames = num_frames
        self.sampling = sampling
        self.frame_interval = frame_interval
        self.num_clips = num_clips if split == "test" else 1
        self.flip_setting = flip
        self.flip = resolve_flip_policy(flip, format_name, self.classes)
        self.flip_map = flip_label_map(self.classes, self.flip)
        # Ten-crop testing mirrors its second five views only where training mirrored the classes
        # too; the test label is unknown, so under skip_left_right/none no view is mirrored (the
        # five crops are used twice: same number of views, same average as five crops).
        self.mirror_test_views = self.flip in ("standard", "swap_left_right")
        self.view_class_maps = self._view_class_maps()
        self.flip_prob = flip_prob
        self.strict = strict
        self.seed = int(seed)
        self.min_frames = min_frames
        self.max_substitutions = max_substitutions
        self.format_name = format_name
        self.epoch = 0
        #: "cpu": items are finished float clips; "device": training items are the decoded uint8 frames
        #: with their crop box and flip (:mod:`videoattn.data.device_transforms`).
        self.transforms_on = "cpu"
        #: The device payloads are decoded on (:meth:`defer_decoding`), None: workers decode.
        self.deferred_decoding: torch.device | None = None
        if strict:
            for record in records:
                if record.error:
                    raise DataError(f"{record.path}: {record.error}")

    def _view_class_maps(self) -> torch.Tensor | None:
        """``(V, K)`` class maps of the test views (see :func:`remap_view_scores`), or None if identity.

        Under ``swap_left_right`` the mirrored views of ten-crop testing give evidence for the
        mirrored class: their scores of twin classes are exchanged before averaging.
        """
        if self.split != "test" or self.transform.num_crops != 10 or self.flip != "swap_left_right":
            return None
        identity = list(range(len(self.classes)))
        mirrored = [i if twin is None else int(twin) for i, twin in enumerate(self.flip_map)]
        if mirrored == identity:
            return None
        per_clip = [identity] * 5 + [mirrored] * 5
        return torch.tensor(per_clip * self.num_clips, dtype=torch.long)

    # ------------------------------------------------------------------ metadata
    @property
    def decoder_backend(self) -> str:
        return self.decoder.name

    @property
    def decodes_in_main_process(self) -> bool:
        """True for ``data.decoder: dali``/``nvjpeg``: workers hand over encoded payloads (:meth:`defer_decoding`)."""
        return hasattr(self.decoder, "prepare")

    @property
    def num_views(self) -> int:
        return self.num_clips * self.transform.num_crops if self.split == "test" else 1

    def metadata(self) -> dict:
        """What a run should record about its data (decoding differences change accuracy)."""
        info = {"format": self.format_name, "split": self.split, "num_entries": len(self.records),
                "num_classes": len(self.classes), "decoder": self.decoder_backend,
                "num_frames": self.num_frames, "sampling": self.sampling,
                "frame_interval": self.frame_interval, "num_views": self.num_views,
                "size": self.transform.size, "scale_size": self.transform.scale_size, "flip": self.flip,
                "flip_setting": self.flip_setting, "seed": self.seed}
        if self.split == "test" and self.transform.num_crops == 10:
            info["mirrored_test_views"] = self.mirror_test_views
        if self.split == "train":
            info["transforms_on"] = self.transforms_on
        try:
            if self.decoder_backend == "pyav":
                import av

                info["decoder_version"] = f"PyAV {av.__version__}"
            elif self.decoder_backend == "dali":
                import nvidia.dali

                info["decoder_version"] = f"DALI {nvidia.dali.__version__}"
            elif self.decoder_backend == "nvjpeg":
                import torchvision

                info["decoder_version"] = f"torchvision {torchvision.__version__} decode_jpeg"
            elif self.decoder_backend == "torchcodec":
                import torchcodec

                info["decoder_version"] = f"torchcodec {torchcodec.__version__}"
            else:
                import PIL

                info["decoder_version"] = f"Pillow {PIL.__version__}"
        except Exception:  # version strings are informative only
            pass
        return info

    def device_transforms_unsupported(self) -> str | None:
        """Why this dataset cannot leave its training transforms to the device, or None if it can."""
        if self.split != "train":
            return f"the {self.split} split uses the evaluation transforms"
        if self.transform.color is not None:
            return "colour jitter (data.options.color_jitter) is applied on the CPU only"
        return None

    def set_transforms_on(self, where: str) -> None:
        """``"cpu"`` (finished clips) or ``"device"`` (uint8 frames + crop box + flip; see
        :mod:`videoattn.data.device_transforms`)."""
        if where not in ("cpu", "device"):
            raise ConfigError(f"transforms_on must be 'cpu' or 'device', got {where!r}")
        if where == "device" and (why_not := self.device_transforms_unsupported()) is not None:
            raise ConfigError(f"config key 'data.transforms_on': 'device' is not available here: {why_not}")
        self.transforms_on = where

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws items use (see the module docstring)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    # ------------------------------------------------------------------ items
    def _rng(self, index: int, epoch: int, attempt: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, max(epoch, 0), index, attempt])

    def _decoder_for(self, record: VideoRecord) -> Decoder:
        template = record.extra.get("frame_template")
        if template and hasattr(self.decoder, "with_template"):  # frame folders, possibly cached
            return self.decoder.with_template(template)
        return self.decoder

    def load(self, index: int, epoch: int = 0, attempt: int = 0, defer: bool | None = None) -> dict:
        """Produce entry ``index`` or raise :class:`DataError` naming its path (no substitution).

        ``defer`` (default: :attr:`deferred_decoding`): return the encoded payload instead of decoded
        frames (``data.decoder: dali``/``nvjpeg``, see :meth:`decode_batch`); every random draw is the same.
        """
        record = self.records[index]
        if record.error:
            raise DataError(f"{record.path}: {record.error}")
        path = record.existing_path()
        if path is None:
            what = "frame folder" if record.is_frames else "file"
            raise DataError(f"{record.path}: {what} is missing")
        rng = self._rng(index, epoch, attempt) if self.split == "train" else None
        decoder = self._decoder_for(record)
        defer = self.deferred_decoding is not None if defer is None else defer

        def indices_for(total: int) -> np.ndarray:
            end = total if record.end_frame is None else min(record.end_frame, total)
            usable = end - record.start_frame
            if usable < self.min_frames:
                raise DataError(f"{path}: too few frames ({max(usable, 0)} usable, at least "
                                f"{self.min_frames} needed)")
            views = sample_views(usable, self.num_frames, self.sampling, self.frame_interval,
                                 self.num_clips, rng)
            return (views + record.start_frame).reshape(-1)

        with decode_errors_as_data_error(path, (ConfigError,) if hasattr(decoder, "prepare") else ()):
            if defer:
                payload = decoder.prepare(path, indices_for, self.deferred_decoding)
                shape = payload.shape
            else:
                frames = decoder.read(path, indices_for)
                shape = frames.shape
        if len(shape) != 4 or shape[-1] != 3 or 0 in shape:
            raise DataError(f"{path}: decoded frames have shape {tuple(shape)}, expected (T, H, W, 3)")
        label = record.label
        flip = False
        if rng is not None and label >= 0 and self.flip_map[label] is not None \
                and rng.random() < self.flip_prob:
            flip = True
            label = int(self.flip_map[label])
        if defer:
            item = {"payload": payload, "label": int(label), "index": int(index), "skipped": []}
            if self.split == "train":  # the crop box the device transforms will cut (same draw as below)
                item["crop_box"] = torch.tensor(pixel_box(self.transform.train_box(*shape[1:3], rng), *shape[1:3]))
                item["flip"] = flip
            return item
        return self._finish(frames, rng, flip, label, index)

    def _finish(self, frames, rng: np.random.Generator | None, flip: bool, label: int, index: int) -> dict:
        """The item of decoded ``frames`` (``(T, H, W, 3)`` uint8 array or tensor): device-transform
        form (frames + crop box + flip) or the finished float clip(s)."""
        if isinstance(frames, torch.Tensor) and (self.split != "train" or self.transforms_on != "device"):
            frames = frames.cpu().numpy()
        clips = frames.reshape(self.num_clips, self.num_frames, *frames.shape[1:])
        if self.split == "train" and self.transforms_on == "device":
            box = pixel_box(self.transform.train_box(*frames.shape[1:3], rng), *frames.shape[1:3])
            video = clips[0] if isinstance(clips, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(clips[0]))
            return {"video": video, "crop_box": torch.tensor(box),
                    "flip": flip, "label": int(label), "index": int(index), "skipped": []}
        if self.split == "train":
            video = self.transform(clips[0], rng, flip)
        else:
            views = [view for clip in clips
                     for view in self.transform(clip, None, False, mirror_views=self.mirror_test_views)]
            video = views[0] if len(views) == 1 else torch.stack(views)
        return {"video": video, "label": int(label), "index": int(index), "skipped": []}

    def __getitem__(self, key) -> dict:
        return _worker_safe(self._item, key)

    def _item(self, key) -> dict:
        if isinstance(key, (tuple, list)):
            index, epoch = int(key[0]), int(key[1])
        else:
            index, epoch = int(key), self.epoch
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.records)} entries")
        return self._produce(index, epoch)

    def _substitute(self, index: int, epoch: int, attempt: int) -> int:
        """The entry tried after attempt ``attempt`` for item ``index`` failed."""
        return int(self._rng(index, epoch, attempt).integers(len(self.records))) if len(self.records) > 1 else index

    def _produce(self, index: int, epoch: int, first_attempt: int = 0, skipped: list[dict] | None = None,
                 defer: bool | None = None) -> dict:
        """Item ``index`` from attempt ``first_attempt`` on (a later attempt continues the substitution
        sequence of an earlier one: the main process does this when a deferred payload cannot be decoded)."""
        skipped = [] if skipped is None else skipped
        current = index if first_attempt == 0 else self._substitute(index, epoch, first_attempt - 1)
        started = time.perf_counter()
        for attempt in range(first_attempt, self.max_substitutions + 1):
            try:
                sample = (self.load(current, epoch, attempt) if defer is None
                          else self.load(current, epoch, attempt, defer=defer))
            except DataError as error:
                if self.strict:
                    raise
                path = self.records[current].existing_path() or self.records[current].path
                skipped.append({"path": path, "reason": _reason(error, path)})
                if self.split != "train":  # evaluation: leave the video out, never substitute
                    return dropped_sample(index, self.records[index].label, skipped)
                current = self._substitute(index, epoch, attempt)
                continue
            sample["skipped"] = skipped
            if "payload" in sample:
                sample["payload"].origin = (index, epoch, attempt)
            worker = torch.utils.data.get_worker_info()
            sample["load"] = (-1 if worker is None else int(worker.id), time.perf_counter() - started,
                              _peak_rss_kib())
            return sample
        raise DataError(f"{len(skipped)} bad entries in a row while producing item {index} (first: "
                        f"{skipped[0]['path']}: {skipped[0]['reason']}); run `videoattn data check`")

    # ------------------------------------------------------------------ deferred decoding (dali, nvjpeg)
    def defer_decoding(self, device: str | torch.device) -> bool:
        """With a decoder that decodes in the main process (``data.decoder: dali``/``nvjpeg``): make items encoded
        payloads to be decoded on ``device`` by :meth:`decode_batch`. Returns whether it did (False for
        the other decoders, whose workers keep decoding). Training needs ``transforms_on: device``."""
        if not self.decodes_in_main_process:
            return False
        if self.split == "train" and self.transforms_on != "device":
            raise ConfigError(f"config key 'data.transforms_on': data.decoder {self.decoder_backend!r} decodes in "
                              "the training process, so the crop/resize/flip run there too: use 'auto' or 'device', "
                              f"not {self.transforms_on!r}")
        self.deferred_decoding = torch.device(device)
        return True

    def decode_batch(self, batch: dict, device: str | torch.device) -> dict:
        """A collated batch of payloads (:meth:`defer_decoding`) -> the batch the CPU decoders give.

        Training: ``video`` uint8 ``(N, T, H, W, C)`` on ``device`` with the workers' ``crop_box`` and
        ``flip`` (for :func:`~videoattn.data.device_transforms.transform_batch_on_device`). A clip neither
        the decoder's backend (DALI, decode_jpeg) nor the CPU decoder can decode is recorded in ``skipped``
        and substituted, continuing the seeded substitution sequence of its item (decoded in this process).
        Evaluation: the finished clips (evaluation transforms, on the CPU as with the CPU decoders); an
        undecodable video is moved to ``dropped``, never substituted. ``strict``: the DataError is raised.
        """
        from .device_transforms import stack_frames

        device = torch.device(device)
        payloads = batch.pop("payload")
        decoded = self.decoder.decode(payloads, device)
        train = self.split == "train"
        items: list[dict] = []
        for position, (payload, frames) in enumerate(zip(payloads, decoded)):
            label, used = int(batch["label"][position]), int(batch["index"][position])
            if not isinstance(frames, DataError):
                if train:
                    items.append({"video": frames, "crop_box": batch["crop_box"][position],
                                  "flip": bool(batch["flip"][position]), "label": label, "index": used})
                else:
                    items.append(self._finish(frames, None, False, label, used))
                continue
            if self.strict:
                raise frames
            item, epoch, attempt = payload.origin
            path = self.records[used].existing_path() or self.records[used].path
            failure = {"path": path, "reason": _reason(frames, path)}
            batch["skipped"].append(failure)
            if not train:
                batch.setdefault("dropped", []).append({"index": used, **failure})
                continue
            more: list[dict] = [failure]
            substitute = self._produce(item, epoch, attempt + 1, skipped=more, defer=False)
            batch["skipped"].extend(more[1:])
            substitute["video"] = substitute["video"].to(device)
            items.append(substitute)
        batch["label"] = torch.tensor([item["label"] for item in items], dtype=torch.long)
        batch["index"] = torch.tensor([item["index"] for item in items], dtype=torch.long)
        batch.pop("video", None)
        if train:
            batch["video"] = stack_frames([item["video"] for item in items])
            batch["crop_box"] = torch.stack([torch.as_tensor(item["crop_box"]) for item in items])
            batch["flip"] = torch.tensor([bool(item["flip"]) for item in items], dtype=torch.bool)
        elif items:
            batch["video"] = torch.stack([item["video"] for item in items])
        return batch


def _peak_rss_kib() -> int:
    """This process's peak resident memory in KiB (0 where ``resource`` is unavailable)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak // 1024 if sys.platform == "darwin" else peak)  # macOS reports bytes


def dropped_sample(index: int, label: int, skipped: list[dict]) -> dict:
    """The item an evaluation split returns for a bad entry: no video, flagged ``dropped``."""
    return {"dropped": True, "index": int(index), "label": int(label), "skipped": skipped}


def _worker_safe(produce, key) -> dict:
    """``produce(key)``; in a DataLoader worker a VideoAttnError comes back as ``{"error": error}``.

    DataLoader would re-raise it in the main process with the worker's whole traceback as its
    message; the loader raises the original error instead (one readable line in the CLI).
    """
    try:
        return produce(key)
    except VideoAttnError as error:
        if torch.utils.data.get_worker_info() is None:
            raise
        return {"error": error}


def _reason(error: DataError, path: str) -> str:
    """The error text without a leading ``"<path>: "`` when that path is the entry's own."""
    text = str(error)
    head, sep, tail = text.partition(": ")
    return tail if sep and head == path else text


# ---------------------------------------------------------------------------------------------------
# Builder


_DEFAULT_TEMPLATES = {"ssv1": "{:05d}.jpg", "frame_list": "img_{:05d}.jpg"}
#: The dataset format of image classification folders (not a video annotation format).
IMAGE_FOLDER = "image_folder"


def read_split(format: str, annotations, root=None, labels=None, *, subset=None, frame_template: str | None = None,
               video_extension: str | None = None) -> tuple[list, list[str]]:
    """``(entries, classes)`` of one split exactly as :func:`build_dataset` reads it: the annotation file
    of a video ``format`` (its default frame template for frame-folder formats), or for ``image_folder``
    the split's folder of class sub-folders (``labels``: the class file or the training folder)."""
    if format == IMAGE_FOLDER:
        from .annotations import load_image_folder

        return load_image_folder(annotations, root=root, labels=labels)
    if format not in FORMATS:
        raise unknown_name("dataset format", format, [*FORMATS, IMAGE_FOLDER])
    template = (frame_template or _DEFAULT_TEMPLATES.get(format)) if FORMATS[format].frames else None
    return load_annotations(format, annotations, root=root, labels=labels, frame_template=template, subset=subset,
                            video_extension=video_extension)


def build_dataset(format: str, root=None, annotations=None, labels=None, split: str = "train",
                  num_frames: int = 8, sampling: str = "tsn", frame_interval: int = 1, size: int = 224,
                  scale_size=None, num_clips: int = 1, num_crops: int = 1, flip: str = "auto",
                  decoder: str = "auto", strict: bool = False, seed: int = 0, *,
                  frame_template: str | None = None, subset=None, video_extension: str | None = None,
                  crop: str | None = None, color_jitter=None, flip_prob: float = 0.5, min_frames: int = 1,
                  max_substitutions: int = 20, decode_threads: int = 1, mean=IMAGENET_MEAN,
                  std=IMAGENET_STD, cache_decoded: bool = False, as_video: bool = False,
                  records: list[VideoRecord] | None = None, classes: list[str] | None = None) -> VideoDataset:
    """Build a :class:`VideoDataset` from a dataset as released (see ``docs/data.md``).

    ``format`` is one of :func:`~videoattn.data.annotations.list_formats`. ``split`` "train" uses
    random sampling and augmentation (``crop``: "multiscale" for TSN sampling, "jitter" for dense
    clips by default), "val" one centre view, "test" ``num_clips`` x ``num_crops`` views.
    ``scale_size`` is the shorter side before cropping (an int), or a fixed ``(height, width)`` such
    as ``(240, 320)`` for the GTA/TSN recipe; None means ``round(size * 256 / 224)``.
    ``color_jitter``: None or (brightness, contrast, saturation, hue). ``cache_decoded``: decode each
    video once and keep its frames in a process-wide memory cache (:mod:`videoattn.data.cache`), for
    small datasets trained on many times; clips are identical to uncached ones.

    ``format="image_folder"``: ``annotations`` is the split's folder of class sub-folders (relative
    to ``root``), ``labels`` a class file or the training folder; one view per image; the time-axis
    arguments (``num_frames``, ``sampling``, ``frame_interval``) do not apply. ``as_video`` gives
    one-frame clips instead of images (see :class:`ImageFolderDataset`).

    ``records`` (with their ``classes``): entries given directly instead of read from
    ``annotations`` (``videoattn predict`` scores arbitrary videos with a dataset's settings). They
    are all frame folders (``is_frames``) or all video files; the format still decides the default
    frame template and the ``flip="auto"`` policy.
    """
    if format not in FORMATS and format != IMAGE_FOLDER:
        raise unknown_name("dataset format", format, [*FORMATS, IMAGE_FOLDER])
    if root is not None and not Path(root).exists():
        raise DataError(f"dataset root {str(root)!r} does not exist")
    if format == IMAGE_FOLDER:
        video_only = {"frame_template": frame_template, "subset": subset, "video_extension": video_extension,
                      "cache_decoded": cache_decoded or None, "decode_threads": None if decode_threads == 1
                      else decode_threads, "min_frames": None if min_frames == 1 else min_frames}
        given = sorted(key for key, value in video_only.items() if value is not None)
        if given:
            raise ConfigError(f"format 'image_folder' does not take {', '.join(given)} (video options)")
        if decoder not in ("auto", "pillow"):
            raise ConfigError(f"format 'image_folder' reads images with Pillow: decoder must be 'auto', got "
                              f"{decoder!r}")
        if split == "test" and num_clips * num_crops > 1:
            raise ConfigError(f"format 'image_folder' evaluates one view per image (a centre crop): got "
                              f"num_clips={num_clips}, num_crops={num_crops}; use views 1x1")
        return ImageFolderDataset(root, split=split, size=size, scale_size=scale_size, strict=strict, seed=seed,
                                  mean=mean, std=std, folder=annotations, labels=labels, flip=flip,
                                  flip_prob=flip_prob, crop=crop or "random_resized", color_jitter=color_jitter,
                                  max_substitutions=max_substitutions, as_video=as_video)
    if as_video:
        raise ConfigError(f"as_video applies to format 'image_folder' only, not {format!r}")
    spec = FORMATS[format]
    options = {"frame_template": frame_template or _DEFAULT_TEMPLATES.get(format) if spec.frames else None,
               "subset": subset, "video_extension": video_extension}
    frames = spec.frames
    if records is None:
        records, classes = read_split(format, annotations, root=root, labels=labels, **options)
    else:
        frames = bool(records) and all(record.is_frames for record in records)
        if frames and not options["frame_template"]:
            options["frame_template"] = _DEFAULT_TEMPLATES.get(format)
        classes = list(classes or [])
    if split != "test":  # train: one random view; val: one centre view
        num_clips, num_crops = 1, 1
    if crop is None:
        crop = "multiscale" if sampling == "tsn" else "jitter"
    transform = build_clip_transform(split, size=size, scale_size=scale_size, num_crops=num_crops, crop=crop,
                                     color=color_jitter, mean=mean, std=std)
    decoder_options = {"num_threads": decode_threads} if (decoder in ("auto", "pyav", "torchcodec", "nvdec")
                                                           and not frames) or decoder == "dali" else {}
    if cache_decoded and decoder in ("dali", "nvjpeg"):
        raise ConfigError("data.options.cache_decoded keeps decoded frames in the loader workers, but "
                          f"data.decoder {decoder!r} decodes in the training process: use one or the other")
    if cache_decoded and decoder == "nvdec" and not frames:
        raise ConfigError("data.options.cache_decoded shares decoded frames with forked loader workers, but "
                          "data.decoder 'nvdec' spawns its workers (CUDA cannot start in a forked one): use one "
                          "or the other")
    if not frames and decoder == "frames":  # a frame-folder dataset's settings applied to video files
        decoder = "auto"
    backend = build_decoder(decoder, frames=frames, frame_template=options["frame_template"],
                            **decoder_options)
    if cache_decoded:
        backend = CachingDecoder(backend)
    return VideoDataset(records, classes, decoder=backend, transform=transform, split=split,
                        num_frames=num_frames, sampling=sampling, frame_interval=frame_interval,
                        num_clips=num_clips, flip=flip, flip_prob=flip_prob, strict=strict, seed=seed,
                        min_frames=min_frames, max_substitutions=max_substitutions, format_name=format)


# ---------------------------------------------------------------------------------------------------
# Images (2D classification, e.g. ImageNet-style pre-training of a backbone)


class ImageFolderDataset(VideoDataset):
    """Images ``<folder>/<class>/<image>`` (``data.format: image_folder``) served by the video machinery.

    Each image is a one-frame video read with Pillow (:class:`~videoattn.data.decoders.ImageFileDecoder`),
    so seeding, flips (``flip`` policy, ``auto``: ``standard`` unless a class names left or right),
    bad-image handling (recorded in ``skipped``, then substituted in training exactly as
    :class:`VideoDataset` does for a bad video) and ``metadata()`` are the video dataset's own.
    Items are ``{"image": (C, H, W), "label", "index", "skipped"}``, or with ``as_video=True``
    ``{"video": (C, 1, H, W), ...}`` for a video model fed one frame. Training: random resized crop
    (``crop``) + flip; evaluation: shorter side to ``scale_size`` (default ``size * 256 / 224``) and one
    centre crop. ``folder`` is the split's sub-folder of ``root`` (None: ``root`` itself); ``labels``
    the class list (file or class folder, see :func:`~videoattn.data.annotations.load_image_folder`).
    """

    def __init__(self, root, split: str = "train", size: int = 224, scale_size=None, strict: bool = False,
                 seed: int = 0, mean=IMAGENET_MEAN, std=IMAGENET_STD, *, folder=None, labels=None,
                 flip: str = "auto", flip_prob: float = 0.5, crop: str = "random_resized", color_jitter=None,
                 max_substitutions: int = 20, as_video: bool = False):
        from .annotations import load_image_folder
        from .decoders import ImageFileDecoder

        records, classes = load_image_folder(folder, root=root, labels=labels)
        transform = build_clip_transform(split, size=size, scale_size=scale_size, crop=crop, color=color_jitter,
                                         mean=mean, std=std)
        super().__init__(records, classes, decoder=ImageFileDecoder(), transform=transform, split=split,
                         num_frames=1, flip=flip, flip_prob=flip_prob, strict=strict, seed=seed,
                         max_substitutions=max_substitutions, format_name="image_folder")
        self.as_video = as_video

    @property
    def samples(self) -> list[tuple[str, int]]:
        """``(path, label)`` of every image."""
        return [(record.path, record.label) for record in self.records]

    def metadata(self) -> dict:
        info = super().metadata()
        for key in ("num_frames", "sampling", "frame_interval"):
            info.pop(key, None)
        info["as_video"] = self.as_video
        return info

    def device_transforms_unsupported(self) -> str | None:
        return "image folders (data.format: image_folder) are transformed on the CPU only"

    def load(self, index: int, epoch: int = 0, attempt: int = 0, defer: bool | None = None) -> dict:
        sample = super().load(index, epoch, attempt, defer=False)
        if not self.as_video:
            sample["image"] = sample.pop("video").squeeze(-3)  # (C, 1, H, W) -> (C, H, W)
        return sample


def build_image_dataset(root, split: str = "train", size: int = 224, **options) -> ImageFolderDataset:
    """An :class:`ImageFolderDataset` of ``<root>/<class>/<image>`` (or ``<root>/<folder>/<class>/...``)."""
    return ImageFolderDataset(root, split=split, size=size, **options)
