"""Classify a video with a model exported by ``videoattn export --format onnx``: onnxruntime, PyAV, numpy.

    python docs/examples/serve_onnx.py model.onnx video.mp4 [--topk 5]

Neither torch nor videoattn is imported: everything the model needs (class names, frame count, input
size, resize, frame sampling, normalisation) is read from the ``videoattn`` entry of the ONNX file's
metadata. The clip is prepared as ``videoattn test`` prepares a 1x1 view (one centre clip, centre
crop): frame indices by the recorded sampling ("tsn": the middle frame of each of T equal segments;
"dense": T frames ``frame_interval`` apart around the middle), shorter side resized to
``scale_size`` with an antialiased bilinear filter (the one torch's ``interpolate(..., antialias=True)``
uses), centre ``size`` x ``size`` crop, ``(rgb / 255 - mean) / std``, layout (1, 3, T, size, size).
"""

from __future__ import annotations

import argparse
import json
import sys

import av
import numpy as np
import onnxruntime


def read_metadata(session: onnxruntime.InferenceSession) -> dict:
    entries = session.get_modelmeta().custom_metadata_map
    if "videoattn" not in entries:
        raise SystemExit("this ONNX file has no 'videoattn' metadata entry: export it with `videoattn export`")
    return json.loads(entries["videoattn"])


def decode_frames(path: str) -> np.ndarray:
    """Every frame of the first video stream, uint8 (T, H, W, 3) RGB."""
    with av.open(path) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    if not frames:
        raise SystemExit(f"{path}: no frame could be decoded")
    return np.stack(frames)


def frame_indices(total: int, num_frames: int, sampling: str, frame_interval: int) -> np.ndarray:
    if sampling == "tsn":
        segment = total / num_frames
        positions = np.arange(num_frames) * segment + segment * 0.5
        return np.clip(np.floor(positions).astype(np.int64), 0, total - 1)
    span = (num_frames - 1) * frame_interval + 1
    room = max(total - span, 0)
    start = int(np.floor(room * 0.5)) if room else 0
    return (start + np.arange(num_frames) * frame_interval) % total


def resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) matrix of the antialiased bilinear (triangle) filter, half-pixel centres."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        low = max(int(center - support + 0.5), 0)
        high = min(int(center + support + 0.5), in_size)
        taps = np.arange(low, high)
        w = np.maximum(0.0, 1.0 - np.abs((taps - center + 0.5) * invscale))
        weights[i, low:high] = w / w.sum() if w.sum() > 0 else 0.0
    return weights


def centre_crop_resized(frames: np.ndarray, size: int, scale_size) -> np.ndarray:
    """Resize the shorter side to ``scale_size`` (or to ``(h, w)``) and crop the centre: float (T, h, w, 3)."""
    height, width = frames.shape[1:3]
    if isinstance(scale_size, (list, tuple)):
        shape = int(scale_size[0]), int(scale_size[1])
    elif height <= width:
        shape = int(scale_size), max(1, round(width * scale_size / height))
    else:
        shape = max(1, round(height * scale_size / width)), int(scale_size)
    crop_h, crop_w = min(size, shape[0]), min(size, shape[1])
    # The centre crop box in resized coordinates, mapped back onto the decoded frame.
    sy, sx = height / shape[0], width / shape[1]
    top, left = (shape[0] - crop_h) // 2 * sy, (shape[1] - crop_w) // 2 * sx
    top_i = min(max(int(round(top)), 0), height - 1)
    left_i = min(max(int(round(left)), 0), width - 1)
    bottom = min(max(int(round(top + crop_h * sy)), top_i + 1), height)
    right = min(max(int(round(left + crop_w * sx)), left_i + 1), width)
    patch = frames[:, top_i:bottom, left_i:right].astype(np.float32)
    if patch.shape[1:3] != (crop_h, crop_w):
        rows = resize_weights(patch.shape[1], crop_h).astype(np.float32)
        cols = resize_weights(patch.shape[2], crop_w).astype(np.float32)
        patch = np.einsum("wx,thxc->thwc", cols, patch)
        patch = np.einsum("yh,thwc->tywc", rows, patch)
    return np.clip(patch, 0, 255)


def prepare_clip(frames: np.ndarray, meta: dict) -> np.ndarray:
    indices = frame_indices(len(frames), meta["num_frames"], meta["sampling"], meta["frame_interval"])
    scale = meta["scale_size"]
    if min(scale if isinstance(scale, (list, tuple)) else [scale]) < meta["size"]:
        raise SystemExit(f"the file records a resize of {scale} px, smaller than its {meta['size']} px input "
                         f"crop: export it again with `videoattn export` (which keeps them consistent)")
    clip = centre_crop_resized(frames[indices], meta["size"], scale)
    mean = np.asarray(meta["mean"], dtype=np.float32) * meta["pixel_range"]
    std = np.asarray(meta["std"], dtype=np.float32) * meta["pixel_range"]
    clip = (clip - mean) / std  # (T, H, W, 3)
    return np.ascontiguousarray(clip.transpose(3, 0, 1, 2)[None], dtype=np.float32)  # (1, 3, T, H, W)


def classify(model_path: str, video_path: str, topk: int = 5) -> list[tuple[str, float]]:
    session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = read_metadata(session)
    clip = prepare_clip(decode_frames(video_path), meta)
    logits = session.run([meta["output_name"]], {meta["input_name"]: clip})[0][0].astype(np.float64)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    order = np.argsort(-probabilities)[:topk]
    return [(meta["classes"][i], float(probabilities[i])) for i in order]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="ONNX file written by `videoattn export --format onnx`")
    parser.add_argument("video", help="a video file PyAV can decode")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print [[class, probability], ...] as JSON")
    args = parser.parse_args(argv)
    top = classify(args.model, args.video, args.topk)
    if args.json:
        json.dump(top, sys.stdout)
        sys.stdout.write("\n")
    else:
        for name, probability in top:
            print(f"{probability:8.4f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
