"""Which frames make each clip: evenly spaced clips, strided snippets and static (tiled-frame) clips."""

from __future__ import annotations

import numpy as np


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


def video_clips(
    frames: np.ndarray,
    kinds: tuple[str, ...],
    clip_frames: int,
    clips_per_video: int,
    static_per_video: int,
    snippet_stride: int,
) -> dict[str, np.ndarray]:
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


# ----------------------------------------------------------------------------- streaming

KIND_ORDER = ("clips", "snippets", "static")


def clip_plan(
    n_frames: int,
    kinds: tuple[str, ...],
    clip_frames: int,
    clips_per_video: int,
    static_per_video: int,
    snippet_stride: int,
) -> list[tuple[str, int, list[int]]]:
    """(kind, j, frame indices) of every clip video_clips would cut from ``n_frames`` frames, in
    video_clips' order; indices past the end repeat the last frame, a static clip repeats one."""
    last = n_frames - 1
    plan = []
    for kind in kinds:
        if kind == "clips":
            starts = clip_starts(n_frames, clip_frames, clips_per_video)
        elif kind == "snippets":
            starts = snippet_starts(n_frames, clip_frames, snippet_stride)
        elif kind == "static":
            count = 1 if n_frames == 1 else static_per_video
            plan += [(kind, j, [i] * clip_frames) for j, i in enumerate(static_frames(n_frames, count))]
            continue
        else:
            raise ValueError(f"unknown feature kind {kind!r}")
        plan += [(kind, j, [min(f, last) for f in range(s, s + clip_frames)]) for j, s in enumerate(starts)]
    return plan


def stream_clips(frames, plan: list[tuple[str, int, list[int]]], convert):
    """Yield (kind, j, (T, H, W, 3) clip) for every entry of ``plan``, in plan order, from one pass
    over ``frames`` ((index, raw frame) pairs; ``convert`` makes a raw frame an RGB array).

    Only frames some pending clip still needs are converted and kept, and a clip is yielded as
    soon as its last frame has arrived and every earlier clip was yielded, so memory is bounded
    by the clips' own frames, not by the video's length. A video shorter than the plan expects
    (its frame count was wrong) gets its missing frames from its last frame."""
    uses: dict[int, int] = {}
    for _, _, indices in plan:
        for i in set(indices):
            uses[i] = uses.get(i, 0) + 1
    kept: dict[int, np.ndarray] = {}
    done = 0  # clips of the plan already yielded

    def ready(upto: int):
        nonlocal done
        while done < len(plan) and max(plan[done][2]) <= upto:
            kind, j, indices = plan[done]
            yield kind, j, np.stack([kept[i] for i in indices])
            for i in set(indices):
                uses[i] -= 1
                if not uses[i]:
                    del kept[i]
            done += 1

    last_index, last_frame = -1, None
    for index, frame in frames:
        last_index, last_frame = index, frame
        if uses.get(index):
            kept[index] = convert(frame)
            yield from ready(index)
        if done == len(plan):
            return
    if last_frame is None:
        return
    # the video ended early: every missing frame becomes its last one
    tail = convert(last_frame) if last_index not in kept else kept[last_index]
    for i in [i for i in uses if i > last_index and uses[i]]:
        kept[i] = tail
    yield from ready(max(uses, default=0))
