"""The frames of one planned job: poses along its timeline, placement, camera and background."""

from __future__ import annotations

import numpy as np

from latentanon.data.actions import action_pose, fall_pose, fight_pose, idle_pose, join, talk_pose
from latentanon.data.actors import Placement, draw_actor, random_outfit
from latentanon.data.config import DataConfig
from latentanon.data.jobs import Job
from latentanon.data.render import Scene, finish, random_scene, render_scene


def _camera(n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-frame camera offsets in pixels: a random vertical offset and, half the time, a shake."""
    cam = np.zeros((n, 2), dtype=np.float32)
    cam[:, 1] = rng.uniform(-1.5, 1.5)
    if rng.random() < 0.5:
        cam += rng.normal(0, 0.25, (n, 2)).astype(np.float32)
    return cam


def _placement(
    cfg: DataConfig, rng: np.random.Generator, x: float | None = None, facing: float | None = None
) -> Placement:
    return Placement(
        x=float(cfg.width / 2 + rng.uniform(-0.12, 0.12) * cfg.width) if x is None else x,
        ground=float(cfg.height * rng.uniform(0.86, 0.94)),
        scale=float(cfg.height * rng.uniform(0.68, 0.76)),
        facing=float(rng.choice([-1.0, 1.0])) if facing is None else facing,
    )


def _finish(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return finish(canvas, rng, noise_std=float(rng.uniform(1.5, 6.0)), gain=float(rng.uniform(0.94, 1.06)))


def _timeline_poses(job: Job, cfg: DataConfig, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Poses of the main actor (and partner), and forward speed, for a long video's timeline."""
    pieces, partner_pieces, speeds = [], [], []
    for start, end, what in job.timeline:
        t = np.arange(end - start, dtype=np.float32) / cfg.fps
        speed = np.zeros(len(t), dtype=np.float32)
        other = None
        kind, _, name = what.partition(":")
        if kind == "idle":
            pose = idle_pose(name, t, job.person, float(rng.uniform(0, 6.3)))
        elif kind == "normal" and name == "walk":
            pose, speed = action_pose("Walk", t, job.person, rng)
        elif kind == "normal" and name == "talk":
            pose = talk_pose(t, job.person, rng)
            other = talk_pose(t, job.partner or job.person, rng)
        elif kind == "normal":
            pose = talk_pose(t, job.person, rng)  # standing alone, gesturing a little
        elif name == "Falling":
            pose = fall_pose(t, job.person, rng)
        elif name == "Fighting":
            pose = fight_pose(t, job.person, rng)
            other = fight_pose(t, job.partner or job.person, rng)
        elif name == "Running":
            pose, speed = action_pose("Run", t, job.person, rng)
        else:
            pose, speed = action_pose(what, t, job.person, rng)
        pieces.append(pose)
        partner_pieces.append(other if other is not None else idle_pose("stand", t, job.partner or job.person, 0.0))
        speeds.append(speed)
    partner = join(partner_pieces) if job.partner is not None else None
    return join(pieces), np.concatenate(speeds), partner


SCENE_POOL_STREAM = 7919  # seeds the shared scene pool apart from every job's own stream


def job_scene(cfg: DataConfig, rng: np.random.Generator) -> Scene:
    """A video's background: its own (``scenes`` = 0) or one of a pool shared by all videos."""
    if cfg.scenes > 0:
        index = int(rng.integers(cfg.scenes))
        return random_scene(np.random.default_rng([cfg.seed, SCENE_POOL_STREAM, index]), cfg.width, cfg.height)
    return random_scene(rng, cfg.width, cfg.height)


def render_job(job: Job, cfg: DataConfig) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one planned video (a single frame for images)."""
    rng = np.random.default_rng(list(job.seed))
    h, w = cfg.height, cfg.width
    scene = job_scene(cfg, rng)
    if job.kind == "timeline":
        pose, speed, partner_pose = _timeline_poses(job, cfg, rng)
    else:
        t = np.arange(job.n_frames, dtype=np.float32) / cfg.fps
        pose, speed = action_pose(job.action, t, job.person, rng)
        partner_pose = None
    if partner_pose is not None:
        gap = float(rng.uniform(0.16, 0.22)) * w
        place = _placement(cfg, rng, x=w / 2 - gap, facing=1.0)
        partner_place = _placement(cfg, rng, x=w / 2 + gap, facing=-1.0)
    else:
        place, partner_place = _placement(cfg, rng), None
    # the camera tracks a walking or running actor: the background pans, the actor stays framed
    pan = place.facing * speed * place.scale * job.person.stature / cfg.fps
    actor_cam = _camera(len(pose), rng)
    background_cam = actor_cam.copy()
    background_cam[:, 0] += float(rng.uniform(0, 200)) + np.cumsum(pan).astype(np.float32)
    if job.kind == "image":
        # a still: one moment of the motion, drawn alone (images are many and must stay cheap)
        moment = slice(k := int(rng.integers(len(pose))), k + 1)
        pose, actor_cam, background_cam = pose[moment], actor_cam[moment], background_cam[moment]
        partner_pose = None if partner_pose is None else partner_pose[moment]
    canvas = render_scene(scene, background_cam, h, w)
    if partner_pose is not None and job.partner is not None:
        assert partner_place is not None  # placed above whenever there is a partner pose
        draw_actor(canvas, partner_pose, job.partner, random_outfit(rng), partner_place, actor_cam)
    draw_actor(canvas, pose, job.person, job.outfit, place, actor_cam)
    frames = _finish(canvas, rng)
    return frames[0] if job.kind == "image" else frames
