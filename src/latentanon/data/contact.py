"""Contact sheets: a grid of sample frames per benchmark set, so a person can see the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentanon.data import layouts
from latentanon.data.actors import ATTRIBUTES
from latentanon.data.video_io import read_image, read_video
from latentanon.figures import pyplot, save_figure

ROWS_PER_SHEET = 8
FRAMES_PER_ROW = 6


def _row_frames(path: Path) -> np.ndarray:
    """FRAMES_PER_ROW evenly spaced frames of a video."""
    video = read_video(path)
    picks = np.linspace(0, len(video) - 1, FRAMES_PER_ROW).round().astype(int)
    return video[picks]


def _caption(job) -> str:
    what = job.action
    if job.set_name == "untrimmed":
        what = ",".join(w for _, _, w in job.timeline if not w.startswith("idle:"))[:40]
    text = f"{job.split} id{job.person.identity} {what}"
    if job.set_name in ("privacy_videos", "privacy_images"):
        text += (
            f"\n{ATTRIBUTES['gender'][job.person.gender]}, {ATTRIBUTES['skin_tone'][job.person.skin_tone]}, "
            f"{ATTRIBUTES['clothing'][job.outfit.clothing]}, face {ATTRIBUTES['face'][job.outfit.face]}"
        )
    return text


def _strip(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    strip = np.full((h + 2, FRAMES_PER_ROW * (w + 2), 3), 255, dtype=np.uint8)
    for k, frame in enumerate(frames[:FRAMES_PER_ROW]):
        strip[1 : h + 1, k * (w + 2) + 1 : k * (w + 2) + 1 + w] = frame
    return strip


def write_contact_sheets(jobs, root: Path, report_dir: Path) -> list[Path]:
    """One PNG per set: evenly chosen videos (FRAMES_PER_ROW frames each) or images, captioned."""
    plt = pyplot()

    report_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for set_name in layouts.SETS:
        members = [j for j in jobs if j.set_name == set_name]
        if not members:
            continue
        images = members[0].kind == "image"
        # videos: one per row, frames across; images: one image per cell
        wanted = ROWS_PER_SHEET * (FRAMES_PER_ROW if images else 1)
        picks = [members[i] for i in np.linspace(0, len(members) - 1, min(wanted, len(members))).astype(int)]
        rows, captions = [], []
        step = FRAMES_PER_ROW if images else 1
        for start in range(0, len(picks), step):
            group = picks[start : start + step]
            if images:
                rows.append(_strip(np.stack([read_image(root / job.path) for job in group])))
                captions.append(", ".join(f"{j.split} id{j.person.identity}" for j in group[:3]) + " ...")
            else:
                rows.append(_strip(_row_frames(root / group[0].path)))
                captions.append(_caption(group[0]))
        width = max(r.shape[1] for r in rows)
        grid = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
        row_h = rows[0].shape[0]
        fig, ax = plt.subplots(figsize=(8.0, 0.9 + 0.8 * len(rows)))
        ax.imshow(grid, interpolation="nearest", extent=(0, grid.shape[1], grid.shape[0], 0))
        ax.set_xlim(-grid.shape[1] * 0.6, grid.shape[1])
        for i, caption in enumerate(captions):
            ax.text(-2, (i + 0.5) * row_h, caption, ha="right", va="center", fontsize=6.5)
        ax.axis("off")
        ax.set_title(f"{set_name} ({layouts.LAYOUT_OF[set_name]} layout)", fontsize=9)
        fig.tight_layout()
        written.append(save_figure(fig, report_dir / f"contact_{set_name}.png", dpi=110))
    return written
