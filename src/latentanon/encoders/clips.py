"""Which frames make each clip: evenly spaced clips, strided snippets and static (tiled-frame) clips."""
from __future__ import annotations

import numpy as np

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})


def clip_starts(n_frames: int, clip_frames: int, count: int) -> list[int]:
    """``count`` evenly spaced start frames of ``clip_frames``-long clips (first at 0, last at the end)."""
    last = max(0, n_frames - clip_frames)
    return [int(s) for s in np.linspace(0, last, count).round().astype(int)] if count > 0 else []


def snippet_starts(n_frames: int, clip_frames: int, stride: int) -> list[int]:
    """Starts of consecutive snippets (stride ``stride``) that fit; one snippet for a shorter video.

    Snippet i covers frames [i * stride, i * stride + clip_frames).
    """
    if stride <= 0:
        raise ValueError(f"snippet stride must be positive, got {stride}")
    if n_frames <= clip_frames:
        return [0]
    return list(range(0, n_frames - clip_frames + 1, stride))


def static_frames(n_frames: int, count: int) -> list[int]:
    """``count`` evenly spaced frame indices, centred in equal parts of the video."""
    return [min(n_frames - 1, int((i + 0.5) * n_frames / count)) for i in range(count)]


def cut(frames: np.ndarray, start: int, length: int) -> np.ndarray:
    """frames[start:start+length], the last frame repeated when the video is too short."""
    idx = np.minimum(np.arange(start, start + length), frames.shape[0] - 1)
    return frames[idx]


def tile(frame: np.ndarray, length: int) -> np.ndarray:
    """A static clip: one (H, W, 3) frame repeated ``length`` times."""
    return np.broadcast_to(frame, (length, *frame.shape)).copy()


def video_clips(frames: np.ndarray, kinds: tuple[str, ...], clip_frames: int, clips_per_video: int,
                static_per_video: int, snippet_stride: int) -> dict[str, np.ndarray]:
    """kind -> (n_k, clip_frames, H, W, 3) uint8 clips of one decoded video (or a 1-frame image)."""
    n = frames.shape[0]
    out = {}
    for kind in kinds:
        if kind == "clips":
            out[kind] = np.stack([cut(frames, s, clip_frames) for s in clip_starts(n, clip_frames, clips_per_video)])
        elif kind == "snippets":
            out[kind] = np.stack([cut(frames, s, clip_frames) for s in snippet_starts(n, clip_frames, snippet_stride)])
        elif kind == "static":
            count = 1 if n == 1 else static_per_video
            out[kind] = np.stack([tile(frames[i], clip_frames) for i in static_frames(n, count)])
        else:
            raise ValueError(f"unknown feature kind {kind!r}")
    return out
