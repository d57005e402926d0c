"""Streaming decode: the clips equal the whole-video path, frames are resized in the decoder,
and a clip leaves the reader before the rest of the video is read."""

from __future__ import annotations

import numpy as np
import pytest

from latentanon.data.video_io import read_video, resize_image, write_video
from latentanon.encoders.clips import clip_plan, stream_clips, video_clips
from latentanon.encoders.config import ExtractConfig
from latentanon.encoders.extraction import iter_video_clips
from latentanon.errors import DataError

CFG = ExtractConfig(clips_per_video=3, static_per_video=2, snippet_stride=8)


def _noise(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(frames, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("n", [1, 7, 16, 17, 40])
@pytest.mark.parametrize("kinds", [("clips", "static"), ("snippets", "static"), ("static",)])
def test_plan_streamed_equals_the_whole_video_cut(n, kinds):
    frames = _noise(n, 2, 2, seed=n)
    expected = video_clips(frames, kinds, 16, 3, 2, 8)
    plan = clip_plan(n, kinds, 16, 3, 2, 8)
    got: dict[str, list] = {}
    for kind, j, clip in stream_clips(((i, frames[i]) for i in range(n)), plan, lambda f: f):
        assert j == len(got.setdefault(kind, []))
        got[kind].append(clip)
    for kind in kinds:
        np.testing.assert_array_equal(np.stack(got[kind]), expected[kind])


def test_clips_leave_before_the_video_is_read_and_unused_frames_are_never_converted():
    n, read, converted = 2000, [], []
    plan = clip_plan(n, ("snippets",), 16, 3, 2, 64)  # 16 of every 64 frames are used

    def frames():
        for i in range(n):
            read.append(i)
            yield i, np.full((1, 1, 3), i % 256, np.uint8)

    def convert(frame):
        converted.append(1)
        return frame

    stream = stream_clips(frames(), plan, convert)
    kind, j, first = next(stream)
    assert (kind, j) == ("snippets", 0) and len(read) == 16  # yielded at its last frame
    rest = list(stream)
    assert len(rest) + 1 == len(plan) and len(converted) == 16 * len(plan)


def test_short_video_repeats_its_last_frame():
    frames = _noise(10, 2, 2)
    plan = clip_plan(14, ("clips",), 16, 1, 1, 16)  # the count claimed 14 frames
    ((_, _, clip),) = stream_clips(((i, frames[i]) for i in range(10)), plan, lambda f: f)
    np.testing.assert_array_equal(clip[9:], np.broadcast_to(frames[9], (7, 2, 2, 3)))


def test_same_size_video_streams_exactly_like_the_whole_video_path(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, _noise(40, 32, 32), fps=16)
    whole = video_clips(read_video(path), ("snippets", "static"), 16, 3, 2, 8)
    streamed: dict[str, list] = {}
    for kind, _, clip in iter_video_clips(path, 40, ("snippets", "static"), 16, CFG, size=(32, 32)):
        streamed.setdefault(kind, []).append(clip)
    for kind in whole:
        np.testing.assert_array_equal(np.stack(streamed[kind]), whole[kind])
    # an unknown frame count (-1) is found by a scan first
    assert len(list(iter_video_clips(path, -1, ("snippets",), 16, CFG, size=(32, 32)))) == len(whole["snippets"])


def test_other_sizes_are_scaled_to_cover_and_centre_cropped_in_the_decoder(tmp_path):
    frame = np.full((30, 80, 3), 128, np.uint8)
    frame[:, :20] = (0, 255, 0)  # wide borders the crop removes
    frame[:, -20:] = (0, 255, 0)
    path = tmp_path / "wide.mp4"
    write_video(path, np.stack([frame] * 4), fps=16)
    video = read_video(path, size=(32, 32))
    assert video.shape == (4, 32, 32, 3)
    assert np.abs(video.astype(int) - 128).max() < 12  # grey only: the green sides are cut
    image = resize_image(frame, (32, 32))
    assert image.shape == (32, 32, 3) and np.abs(image.astype(int) - 128).max() < 12
    assert resize_image(frame, (30, 80)) is frame  # already that size: untouched


def test_unreadable_video_names_the_file(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"not a video")
    with pytest.raises(DataError, match="broken.mp4"):
        list(iter_video_clips(path, 8, ("clips",), 16, CFG, size=(32, 32)))


def test_seeking_over_long_gaps_gives_the_frames_a_straight_decode_gives(tmp_path, monkeypatch):
    from latentanon.data.video_io import frame_rgb, iter_frames

    path = tmp_path / "long.mp4"
    video = _noise(1, 32, 32)[0].astype(int)
    frames = np.stack([np.clip(video + (t % 50) * 3 - 75 + (t // 50) * 7, 0, 255) for t in range(420)]).astype(np.uint8)
    write_video(path, frames, fps=16)
    straight = {i: frame_rgb(f) for i, f in iter_frames(path)}
    wanted = [*range(0, 16), *range(150, 166), *range(300, 316), 410]
    seen = {}
    for index, frame in iter_frames(path, wanted=wanted, seek_gap=20):
        assert index not in seen  # increasing, never repeated
        seen[index] = frame_rgb(frame)
    assert set(wanted) <= set(seen) and len(seen) < len(straight)  # it skipped frames
    for index in wanted:
        np.testing.assert_array_equal(seen[index], straight[index])
    # the extractor's clips of a long video agree whether it seeks or not
    cfg = ExtractConfig(clips_per_video=3, static_per_video=2)
    import latentanon.encoders.extraction as extraction

    monkeypatch.setattr(extraction, "SEEK_GAP_FRAMES", 20)
    seeking = list(iter_video_clips(path, 420, ("clips", "static"), 16, cfg, size=(32, 32)))
    whole = video_clips(read_video(path), ("clips", "static"), 16, 3, 2, 16)
    assert len(seeking) == 5
    for kind, j, clip in seeking:
        np.testing.assert_array_equal(clip, whole[kind][j])
