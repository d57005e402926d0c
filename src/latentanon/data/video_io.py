"""Reading and writing mp4 clips with PyAV; every failure names the file."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import cast

import av
import numpy as np

from latentanon._files import atomic_path
from latentanon.errors import DataError


def write_video(path: str | Path, frames: np.ndarray, fps: int, codec: str = "libx264") -> None:
    """Write (T, H, W, 3) uint8 frames atomically (a temp file renamed into place)."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise DataError(f"{path}: expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    with atomic_path(path, durable=False) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        # a str codec types as any stream kind; the codecs this writer is given all encode video
        stream = cast(av.VideoStream, container.add_stream(codec, rate=fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p" if codec != "libx264rgb" else "rgb24"
        if codec == "libx264":
            # near-lossless and fast: tiny clips, colours must survive for the attribute labels
            stream.options = {"crf": "12", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@contextmanager
def _decoding(path: Path):
    """(container, first video stream) of ``path``; failures while opening or decoding inside the
    block become a DataError naming the file."""
    if not path.exists():
        raise DataError(f"{path}: video file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            yield container, container.streams.video[0]
    except DataError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot decode video ({type(exc).__name__}: {exc})") from exc


def cover_size(height: int, width: int, target: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of a ``height`` x ``width`` frame scaled, aspect kept, so it just covers ``target``
    (the short side fits; the long side is then centre-cropped)."""
    th, tw = target
    scale = max(th / height, tw / width)
    return max(th, round(height * scale)), max(tw, round(width * scale))


def frame_rgb(frame: av.VideoFrame, size: tuple[int, int] | None = None) -> np.ndarray:
    """One decoded frame as (H, W, 3) uint8; with ``size`` = (h, w), scaled in the decoder's
    swscale (area filter: antialiased downscaling) to cover it and centre-cropped. A frame that
    already has that size is only converted, so same-size sources decode exactly as before."""
    if size is None or (frame.height, frame.width) == tuple(size):
        return frame.to_ndarray(format="rgb24")
    th, tw = size
    sh, sw = cover_size(frame.height, frame.width, size)
    scaled = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="AREA").to_ndarray()
    top, left = (sh - th) // 2, (sw - tw) // 2
    return np.ascontiguousarray(scaled[top : top + th, left : left + tw])


def resize_image(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """An (H, W, 3) uint8 image with frame_rgb's resize semantics (cover, then centre crop)."""
    if size is None or image.shape[:2] == tuple(size):
        return image
    return frame_rgb(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"), size)


def iter_frames(path: str | Path, threads: int = 0, wanted: list[int] | None = None, seek_gap: int = 0):
    """(index, av.VideoFrame) for the frames of a video in order, decoded once and never converted
    here: the caller converts only the frames it keeps (frame_rgb), so memory does not grow with
    the video's length. ``threads`` decoder threads (0: FFmpeg picks). DataError names the file.

    With ``wanted`` (frame indices) and ``seek_gap`` > 0, runs of unwanted frames longer than
    ``seek_gap`` are skipped by seeking to the keyframe before the next wanted frame instead of
    decoding through them (only frames from that keyframe on are yielded); frames are then
    numbered by their timestamps. A video whose timestamps do not number its frames 0, 1, 2, ...
    (checked on the frames before the first seek) is decoded straight through."""
    path = Path(path)
    with _decoding(path) as (container, stream):
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        runs = _wanted_runs(wanted, seek_gap) if wanted and seek_gap > 0 else []
        rate, time_base = stream.average_rate, stream.time_base
        frames = container.decode(stream)
        if len(runs) < 2 or not rate or not time_base:
            yield from enumerate(frames)
            return
        origin = None  # pts of frame 0
        for index, frame in enumerate(frames):
            if origin is None:
                origin = frame.pts
            if frame.pts is None or origin is None or round((frame.pts - origin) * time_base * rate) != index:
                yield index, frame  # timestamps do not number the frames: no seeking
                yield from enumerate(frames, start=index + 1)
                return
            yield index, frame
            if index >= runs[0][1]:
                break
        else:
            return
        last = index
        for run_start, run_end in runs[1:]:
            for attempt in (run_start, 0):  # seek from the start when a seek lands past the run
                container.seek(origin + int(attempt / rate / time_base), stream=stream, backward=True, any_frame=False)
                outcome, decoded = "overshot", False
                for frame in container.decode(stream):
                    if frame.pts is None:
                        raise DataError(f"{path}: a frame without a timestamp after seeking")
                    index = int(round((frame.pts - origin) * time_base * rate))
                    if not decoded and index > run_start:
                        break
                    decoded = True
                    if index > last:
                        yield index, frame
                        last = index
                    if index >= run_end:
                        outcome = "done"
                        break
                else:
                    outcome = "ended" if decoded else "overshot"
                if outcome != "overshot":
                    break
            else:
                raise DataError(f"{path}: cannot seek to frame {run_start}")
            if outcome == "ended":
                return


def _wanted_runs(wanted: list[int], gap: int) -> list[tuple[int, int]]:
    """[first, last] of runs of wanted frames separated by more than ``gap`` frames."""
    runs: list[list[int]] = []
    for index in sorted(set(wanted)):
        if runs and index - runs[-1][1] <= gap:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return [(a, b) for a, b in runs]


def read_video(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """All frames of a video as (T, H, W, 3) uint8, resized in the decoder to ``size`` = (h, w)
    when given (frame_rgb); DataError naming the file when unreadable."""
    path = Path(path)
    frames = [frame_rgb(f, size) for _, f in iter_frames(path)]
    if not frames:
        raise DataError(f"{path}: video has no decodable frames")
    return np.stack(frames)


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image as PNG atomically (a temp file renamed into place)."""
    from PIL import Image

    path = Path(path)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise DataError(f"{path}: expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    with atomic_path(path, durable=False) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def read_image(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8; DataError naming the file when missing or unreadable."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc


def scan_video(path: str | Path) -> dict:
    """Frame count, fps and size from a full decode (container metadata can lie for truncated
    files), without converting frames to RGB arrays: the cheap way to check many videos."""
    path = Path(path)
    frames, sizes = 0, set()
    with _decoding(path) as (container, stream):
        stream.thread_type = "AUTO"  # frame threads: long videos scan on every core
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        for frame in container.decode(stream):
            frames += 1
            sizes.add((frame.height, frame.width))
    if not frames:
        raise DataError(f"{path}: video has no decodable frames")
    if len(sizes) > 1:
        raise DataError(f"{path}: frame size changes within the video ({sorted(sizes)})")
    height, width = sizes.pop()
    return {"frames": frames, "fps": fps, "height": height, "width": width}
