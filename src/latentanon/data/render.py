"""Vectorised anti-aliased drawing of whole videos at once: capsules, discs, quads, scenes.

Every primitive returns a coverage map (T, H, W) in [0, 1] for T frames; shapes move per frame
because their coordinates are (T, ...) arrays. Coverage is "distance to the edge + half a pixel",
clipped, which gives one pixel of anti-aliasing and keeps thin limbs visible at 32x32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates, (1, H, W) each, in image axes (x right, y down)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    return xs[None], ys[None]


class Patch(NamedTuple):
    """Coverage (T, h, w) of a shape inside the window rows x cols of the frame."""

    cov: np.ndarray
    rows: slice
    cols: slice


def window(points: list[np.ndarray], margin, height: int, width: int) -> tuple[slice, slice]:
    """The pixel window that holds every point ((T, 2) arrays) over all frames, plus a margin."""
    stacked = np.concatenate(points, axis=0)
    pad = float(np.max(margin)) + 1.5
    x0, y0 = np.floor(stacked.min(axis=0) - pad).astype(int)
    x1, y1 = np.ceil(stacked.max(axis=0) + pad).astype(int)
    rows = slice(int(np.clip(y0, 0, height)), int(np.clip(y1, 0, height)))
    cols = slice(int(np.clip(x0, 0, width)), int(np.clip(x1, 0, width)))
    return rows, cols


def _crop(grid, rows: slice, cols: slice):
    xs, ys = grid
    return xs[:, rows, cols], ys[:, rows, cols]


def capsule(grid, a: np.ndarray, b: np.ndarray, radius, box=None) -> Patch:
    """Coverage of thick segments from a to b ((T, 2) pixel coords) with a (T,) or scalar radius."""
    height, width = grid[0].shape[1:]
    rows, cols = box or window([a, b], radius, height, width)
    xs, ys = _crop(grid, rows, cols)
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    dx, dy = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
    length2 = np.maximum(dx * dx + dy * dy, 1e-6)
    t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / length2, 0.0, 1.0)
    ex, ey = xs - ax - t * dx, ys - ay - t * dy
    dist = np.sqrt(ex * ex + ey * ey)
    r = np.asarray(radius, dtype=np.float32).reshape(-1, 1, 1)
    return Patch(np.clip(r - dist + 0.5, 0.0, 1.0), rows, cols)


def disc(grid, centre: np.ndarray, radius, box=None) -> Patch:
    height, width = grid[0].shape[1:]
    rows, cols = box or window([centre], radius, height, width)
    xs, ys = _crop(grid, rows, cols)
    r = np.asarray(radius, dtype=np.float32).reshape(-1, 1, 1)
    ex, ey = xs - centre[:, 0, None, None], ys - centre[:, 1, None, None]
    return Patch(np.clip(r - np.sqrt(ex * ex + ey * ey) + 0.5, 0.0, 1.0), rows, cols)


def convex_quad(grid, corners: np.ndarray) -> Patch:
    """Coverage of convex quads given as (T, 4, 2) corners in either winding order."""
    height, width = grid[0].shape[1:]
    rows, cols = window([corners[:, i] for i in range(4)], 0.0, height, width)
    xs, ys = _crop(grid, rows, cols)
    cov = None
    centre = corners.mean(axis=1)
    for i in range(4):
        p, q = corners[:, i], corners[:, (i + 1) % 4]
        nx, ny = q[:, 1] - p[:, 1], -(q[:, 0] - p[:, 0])
        norm = np.maximum(np.hypot(nx, ny), 1e-6)
        nx, ny = nx / norm, ny / norm
        # orient each edge normal to point inwards (towards the centre)
        inward = np.sign((centre[:, 0] - p[:, 0]) * nx + (centre[:, 1] - p[:, 1]) * ny)
        inward[inward == 0] = 1.0
        nx, ny = nx * inward, ny * inward
        signed = (xs - p[:, 0, None, None]) * nx[:, None, None] + (ys - p[:, 1, None, None]) * ny[:, None, None]
        edge = np.clip(signed + 0.5, 0.0, 1.0)
        cov = edge if cov is None else np.minimum(cov, edge)
    assert cov is not None  # the loop above runs over all four edges
    return Patch(cov, rows, cols)


def intersect(a: Patch, b: Patch) -> Patch:
    """Pixelwise minimum of two patches drawn in the same window."""
    if (a.rows, a.cols) != (b.rows, b.cols):
        raise ValueError("intersect needs patches drawn in the same window")
    return Patch(np.minimum(a.cov, b.cov), a.rows, a.cols)


def paint(canvas: np.ndarray, patch: Patch, colour) -> None:
    """Alpha-blend a colour ((3,) or (T, 3)) into a (T, H, W, 3) float canvas in place."""
    if patch.cov.size == 0:
        return
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 1:
        colour = colour[None]
    region = canvas[:, patch.rows, patch.cols]
    change = colour[:, None, None, :] - region
    change *= patch.cov[..., None]
    region += change


@dataclass(frozen=True)
class Scene:
    """A procedural background, periodic in x so a panning camera never runs out of it."""

    wall: tuple[float, float, float]
    floor: tuple[float, float, float]
    horizon: float  # fraction of the height where the floor starts
    boxes: tuple[tuple[float, float, float, float, float, float, float], ...]  # x, y, w, h, r, g, b
    period: float  # pixels after which the pattern repeats
    texture: float  # strength of the floor's stripes


SCENE_KINDS = ("indoor", "street", "park", "gym", "office", "night")
_SCENE_TINTS = {
    "indoor": ((170, 160, 140), (110, 90, 70)),
    "street": ((150, 165, 185), (95, 95, 100)),
    "park": ((140, 190, 230), (80, 140, 70)),
    "gym": ((200, 200, 190), (150, 110, 80)),
    "office": ((185, 190, 200), (120, 120, 135)),
    "night": ((40, 45, 70), (50, 50, 55)),
}


def _rgb(colour: np.ndarray) -> tuple[float, float, float]:
    red, green, blue = map(float, colour)
    return red, green, blue


def random_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    kind = SCENE_KINDS[int(rng.integers(len(SCENE_KINDS)))]
    wall, floor = (np.array(c, dtype=np.float32) for c in _SCENE_TINTS[kind])
    wall = np.clip(wall + rng.normal(0, 18, 3), 0, 255)
    floor = np.clip(floor + rng.normal(0, 18, 3), 0, 255)
    period = float(width) * float(rng.uniform(1.5, 2.5))
    horizon = float(rng.uniform(0.55, 0.72))
    boxes: list[tuple[float, float, float, float, float, float, float]] = []
    for _ in range(int(rng.integers(1, 4))):
        w = float(rng.uniform(0.1, 0.35)) * width
        h = float(rng.uniform(0.15, 0.45)) * height
        x = float(rng.uniform(0, period))
        y = horizon * height - h * float(rng.uniform(0.6, 1.0))
        colour = np.clip(wall * rng.uniform(0.4, 1.3) + rng.normal(0, 25, 3), 0, 255)
        boxes.append((x, y, w, h, *_rgb(colour)))
    return Scene(_rgb(wall), _rgb(floor), horizon, tuple(boxes), period, float(rng.uniform(0.0, 14.0)))


def render_scene(scene: Scene, camera: np.ndarray, height: int, width: int) -> np.ndarray:
    """Background frames (T, H, W, 3) float for camera offsets (T, 2) in pixels (x pans, y shakes)."""
    if len(camera) > 1:
        # draw each distinct camera position once (a still or shaking camera repeats positions)
        snapped = np.round(camera * 4.0) / 4.0
        unique, inverse = np.unique(snapped, axis=0, return_inverse=True)
        if len(unique) < len(camera):
            return render_scene(scene, unique.astype(np.float32), height, width)[inverse.reshape(-1)]
    xs, ys = pixel_grid(height, width)
    wx = xs + camera[:, 0, None, None]
    wy = ys + camera[:, 1, None, None]
    horizon_px = scene.horizon * height
    floor_cov = np.clip(wy - horizon_px + 0.5, 0.0, 1.0)
    # wall brightens towards the top, floor carries stripes that reveal camera motion
    shade = (1.0 + 0.15 * (1.0 - wy / height))[..., None]
    canvas = np.empty((camera.shape[0], height, width, 3), dtype=np.float32)
    canvas[:] = np.asarray(scene.wall, dtype=np.float32) * shade
    stripes = scene.texture * np.sin(2 * np.pi * wx * 4.0 / scene.period)
    floor = np.asarray(scene.floor, dtype=np.float32) + stripes[..., None]
    canvas = canvas * (1 - floor_cov[..., None]) + floor * floor_cov[..., None]
    for x, y, w, h, r, g, b in scene.boxes:
        local = np.mod(wx - x, scene.period)
        inside_x = np.minimum(np.clip(local + 0.5, 0, 1), np.clip(w - local + 0.5, 0, 1))
        inside_y = np.minimum(np.clip(wy - y + 0.5, 0, 1), np.clip(y + h - wy + 0.5, 0, 1))
        paint(canvas, Patch(inside_x * inside_y, slice(None), slice(None)), (r, g, b))
    return canvas


def finish(canvas: np.ndarray, rng: np.random.Generator, noise_std: float, gain: float) -> np.ndarray:
    """Global exposure gain and sensor noise, then quantise to uint8."""
    out = canvas * np.float32(gain) + np.float32(noise_std) * rng.standard_normal(canvas.shape, dtype=np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
