"""Synthetic people: private attributes, identities with body proportions and gait, and drawing.

A pose is a (T, len(DOF)) array of joint angles in the body frame (positive = towards the side
the actor faces), plus a lift (jump height) and a horizontal offset. Kinematics turn it into
joint positions; the ground contact is solved so that the lowest body point rests on the floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentanon.data.render import capsule, convex_quad, disc, intersect, paint, pixel_grid, window

# Private attributes: names of the integer class ids written to the manifests.
SKIN_TONES = ("light", "medium_light", "medium_dark", "dark")
GENDERS = ("masculine", "feminine")
CLOTHING = ("red", "green", "blue", "yellow", "purple", "orange")
FACES = ("none", "partial", "complete")
ATTRIBUTES = {"skin_tone": SKIN_TONES, "gender": GENDERS, "clothing": CLOTHING, "face": FACES}

_SKIN_RGB = np.array([(245, 208, 170), (214, 160, 110), (150, 95, 55), (85, 55, 35)], dtype=np.float32)
_CLOTHING_RGB = np.array(
    [(205, 35, 35), (35, 160, 55), (40, 70, 210), (225, 205, 35), (140, 45, 170), (245, 135, 25)],
    dtype=np.float32,
)
_HAIR_RGB = np.array([(25, 20, 18), (75, 45, 25), (150, 110, 60), (120, 120, 120)], dtype=np.float32)
_MASK_RGB = np.array((232, 236, 240), dtype=np.float32)
_TROUSERS_RGB = np.array([(45, 45, 50), (30, 40, 80), (90, 70, 50), (110, 110, 115)], dtype=np.float32)

DOF = ("lean", "arm_r", "elbow_r", "arm_l", "elbow_l", "leg_r", "knee_r", "leg_l", "knee_l", "lift", "shift")
D = {name: i for i, name in enumerate(DOF)}


@dataclass(frozen=True)
class Identity:
    """A persistent person: static attributes, body proportions and gait style."""

    identity: int
    skin_tone: int
    gender: int
    stature: float  # overall height factor
    shoulder: float  # half shoulder width (body units; person height = 1)
    hip: float  # half hip width
    limb: float  # limb length factor
    head: float  # head radius
    hair: int  # hair colour index
    stride_hz: float  # walking stride frequency (gait)
    arm_swing: float  # arm swing amplitude while walking (gait)
    sway_hz: float  # idle sway frequency


@dataclass(frozen=True)
class Outfit:
    """What changes from one video of a person to the next."""

    clothing: int
    face: int
    trousers: int


def make_identity(identity: int, skin_tone: int, gender: int, rng: np.random.Generator) -> Identity:
    feminine = gender == 1
    return Identity(
        identity=identity,
        skin_tone=skin_tone,
        gender=gender,
        stature=float(rng.uniform(0.88, 1.06) * (0.96 if feminine else 1.0)),
        shoulder=float(rng.uniform(0.085, 0.1) if feminine else rng.uniform(0.125, 0.145)),
        hip=float(rng.uniform(0.1, 0.12) if feminine else rng.uniform(0.065, 0.08)),
        limb=float(rng.uniform(0.92, 1.08)),
        head=float(rng.uniform(0.12, 0.135)),
        hair=int(rng.integers(len(_HAIR_RGB))),
        stride_hz=float(rng.uniform(0.7, 1.15)),
        arm_swing=float(rng.uniform(0.15, 0.6)),
        sway_hz=float(rng.uniform(0.2, 0.45)),
    )


def random_outfit(rng: np.random.Generator) -> Outfit:
    return Outfit(
        clothing=int(rng.integers(len(CLOTHING))),
        face=int(rng.integers(len(FACES))),
        trousers=int(rng.integers(len(_TROUSERS_RGB))),
    )


def _direction(angle: np.ndarray) -> np.ndarray:
    """Unit vectors (T, 2) for angles measured from straight down, y up."""
    return np.stack([np.sin(angle), -np.cos(angle)], axis=-1)


def kinematics(pose: np.ndarray, person: Identity, facing: float) -> dict[str, np.ndarray]:
    """Joint positions (T, 2) in body units (x right, y up), feet resting on y = 0 (plus lift)."""
    limb = person.limb
    torso_len, neck_len = 0.3, 0.035
    upper_arm, forearm = 0.165 * limb, 0.155 * limb
    thigh, shin = 0.235 * limb, 0.235 * limb
    lean = facing * pose[:, D["lean"]]
    axis = _direction(np.pi - lean)  # torso axis, up when lean = 0
    across = np.stack([axis[:, 1], -axis[:, 0]], axis=-1)  # perpendicular, to the actor's right
    pelvis = np.zeros((pose.shape[0], 2), dtype=np.float32)
    pelvis[:, 0] = pose[:, D["shift"]]
    j: dict[str, np.ndarray] = {"pelvis": pelvis}
    j["neck"] = pelvis + torso_len * axis
    shoulders = pelvis + 0.9 * torso_len * axis
    j["head"] = j["neck"] + (neck_len + person.head) * axis
    for side, sign in (("r", 1.0), ("l", -1.0)):
        j[f"shoulder_{side}"] = shoulders + sign * person.shoulder * across
        j[f"hip_{side}"] = pelvis + sign * person.hip * across
        leg_root = pelvis + sign * 0.6 * person.hip * across
        arm = facing * pose[:, D[f"arm_{side}"]]
        fore = facing * (pose[:, D[f"arm_{side}"]] + pose[:, D[f"elbow_{side}"]])
        j[f"elbow_{side}"] = j[f"shoulder_{side}"] + upper_arm * _direction(arm)
        j[f"hand_{side}"] = j[f"elbow_{side}"] + forearm * _direction(fore)
        leg = facing * pose[:, D[f"leg_{side}"]]
        lower = facing * (pose[:, D[f"leg_{side}"]] - pose[:, D[f"knee_{side}"]])
        j[f"leg_root_{side}"] = leg_root
        j[f"knee_{side}"] = leg_root + thigh * _direction(leg)
        j[f"foot_{side}"] = j[f"knee_{side}"] + shin * _direction(lower)
    # ground contact: the lowest point of the body rests on the floor, then the jump lift
    lowest = np.min(
        np.stack(
            [j[k][:, 1] for k in ("foot_r", "foot_l", "knee_r", "knee_l", "pelvis", "hand_r", "hand_l")]
            + [j["head"][:, 1] - person.head],
            axis=0,
        ),
        axis=0,
    )
    offset = -lowest + 0.02 + pose[:, D["lift"]]
    for k in j:
        j[k] = j[k] + np.stack([np.zeros_like(offset), offset], axis=-1)
    return j


@dataclass(frozen=True)
class Placement:
    """Where an actor stands in the world (pixels) and how large it is."""

    x: float
    ground: float
    scale: float  # pixels per body unit (body height = 1 unit times stature)
    facing: float  # +1 faces right, -1 faces left


def draw_actor(
    canvas: np.ndarray,
    pose: np.ndarray,
    person: Identity,
    outfit: Outfit,
    place: Placement,
    camera: np.ndarray,
) -> None:
    """Draw one actor into a (T, H, W, 3) float canvas; camera is (T, 2) pixel offsets."""
    _, height, width, _ = canvas.shape
    grid = pixel_grid(height, width)
    joints = kinematics(pose, person, place.facing)
    scale = place.scale * person.stature

    def px(name: str) -> np.ndarray:
        p = joints[name]
        return np.stack(
            [place.x - camera[:, 0] + scale * p[:, 0], place.ground - camera[:, 1] - scale * p[:, 1]], axis=-1
        ).astype(np.float32)

    skin = _SKIN_RGB[person.skin_tone]
    shirt = _CLOTHING_RGB[outfit.clothing]
    hair = _HAIR_RGB[person.hair]
    trousers = _TROUSERS_RGB[outfit.trousers]
    head_r = person.head * scale
    head, neck = px("head"), px("neck")
    if person.gender == 1:
        # long hair falls behind the head onto the shoulders
        tail = 0.35 * head + 0.65 * neck + np.array([0, 0.6 * head_r], dtype=np.float32)
        paint(canvas, capsule(grid, head, tail, head_r * 0.95), hair)
    limb_r, leg_r = 0.03 * scale, 0.04 * scale
    for side in ("l", "r"):
        paint(canvas, capsule(grid, px(f"leg_root_{side}"), px(f"knee_{side}"), leg_r), trousers)
        paint(canvas, capsule(grid, px(f"knee_{side}"), px(f"foot_{side}"), leg_r * 0.9), trousers)
    torso = np.stack([px("shoulder_r"), px("shoulder_l"), px("hip_l"), px("hip_r")], axis=1)
    paint(canvas, convex_quad(grid, torso), shirt)
    if person.gender == 1:
        # a knee-length skirt in the outfit's colour, flared from the hips
        down = (px("pelvis") - neck) / np.float32(0.9)
        flare = (px("hip_r") - px("hip_l")) * np.float32(0.35)
        skirt = np.stack(
            [px("hip_r"), px("hip_l"), px("hip_l") + down * 0.55 - flare, px("hip_r") + down * 0.55 + flare], axis=1
        )
        paint(canvas, convex_quad(grid, skirt), shirt * np.float32(0.8))
    paint(canvas, capsule(grid, neck, head, 0.03 * scale), skin)
    for side in ("l", "r"):
        # short sleeves: the upper arm shows skin below the sleeve
        sleeve_end = px(f"shoulder_{side}") + np.float32(0.45) * (px(f"elbow_{side}") - px(f"shoulder_{side}"))
        paint(canvas, capsule(grid, sleeve_end, px(f"elbow_{side}"), limb_r), skin)
        paint(canvas, capsule(grid, px(f"shoulder_{side}"), sleeve_end, limb_r * 1.1), shirt)
        paint(canvas, capsule(grid, px(f"elbow_{side}"), px(f"hand_{side}"), limb_r), skin)
        paint(canvas, disc(grid, px(f"hand_{side}"), limb_r * 1.3), skin)
    box = window([head], head_r, height, width)
    head_cov = disc(grid, head, head_r, box)
    paint(canvas, head_cov, skin)
    up = head - neck
    up = up / np.maximum(np.linalg.norm(up, axis=-1, keepdims=True), 1e-6)  # unit vector to the crown
    # features scale with the head so a face stays readable at every frame size
    eye_r = np.maximum(0.5, 0.2 * head_r).astype(np.float32)
    face = FACES[outfit.face]
    if face == "none":
        # the face is turned away: the whole head shows hair
        paint(canvas, head_cov, hair)
        return
    # hair on the crown, eyes as dark dots, a red mouth (covered by a mask on partial faces)
    paint(canvas, intersect(head_cov, disc(grid, head + up * head_r * 0.8, head_r * 0.75, box)), hair)
    for offset in (-0.4, 0.4):
        eye = head + np.array([offset * head_r, 0.05 * head_r], dtype=np.float32)
        paint(canvas, disc(grid, eye, eye_r, box), (20, 15, 15))
    mouth = head - up * head_r * 0.5
    paint(
        canvas,
        capsule(
            grid,
            mouth - np.float32(0.3) * head_r * np.stack([up[:, 1], -up[:, 0]], -1),
            mouth + np.float32(0.3) * head_r * np.stack([up[:, 1], -up[:, 0]], -1),
            eye_r,
            box,
        ),
        (170, 30, 40),
    )
    if face == "partial":
        # the lower half of the face is covered (a light mask), as in partly visible faces
        lower = disc(grid, head - up * head_r * 0.75, head_r * 0.85, box)
        paint(canvas, intersect(head_cov, lower), _MASK_RGB)
