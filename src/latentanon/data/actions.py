"""Action classes as joint-angle trajectories, and timelines of several actions in one video.

Three pairs are built so that no single frame tells them apart:
- SitDown / StandUp and RaiseArms / LowerArms: the second of each pair is the first rendered
  backwards in time, so both show exactly the same set of frames;
- WaveSlow / WaveFast: the same arm poses with a uniformly random phase, only the speed differs.
Every trajectory also carries the actor's gait (stride frequency, arm swing, sway).
"""

from __future__ import annotations

import numpy as np

from latentanon.data.actors import DOF, D, Identity

ACTIONS = (
    "WaveSlow",
    "WaveFast",
    "SitDown",
    "StandUp",
    "RaiseArms",
    "LowerArms",
    "Walk",
    "Run",
    "Jump",
    "Punch",
    "Kick",
    "Bow",
)
PAIRS = (("WaveSlow", "WaveFast"), ("SitDown", "StandUp"), ("RaiseArms", "LowerArms"))
REVERSED = {"StandUp": "SitDown", "LowerArms": "RaiseArms"}
ANOMALIES = ("Falling", "Fighting", "Running")
# Posture an action starts from and ends in (untrimmed timelines follow these states).
TRANSITIONS = {
    "SitDown": ("stand", "seated"),
    "RaiseArms": ("stand", "arms_up"),
    "StandUp": ("seated", "stand"),
    "LowerArms": ("arms_up", "stand"),
}

_ARMS_UP = np.pi - 0.25


def _zeros(n: int) -> np.ndarray:
    return np.zeros((n, len(DOF)), dtype=np.float32)


def idle_pose(state: str, t: np.ndarray, person: Identity, phase: float) -> np.ndarray:
    """Resting posture with the actor's own sway and breathing."""
    pose = _zeros(len(t))
    sway = np.sin(2 * np.pi * person.sway_hz * t + phase)
    if state == "seated":
        pose[:, D["leg_r"]] = pose[:, D["leg_l"]] = np.pi / 2
        pose[:, D["knee_r"]] = pose[:, D["knee_l"]] = np.pi / 2
        pose[:, D["arm_r"]] = pose[:, D["arm_l"]] = 0.45
        pose[:, D["elbow_r"]] = pose[:, D["elbow_l"]] = 0.7
        pose[:, D["lean"]] = -0.05 + 0.04 * sway
        return pose
    pose[:, D["lean"]] = 0.03 * sway
    pose[:, D["leg_r"]], pose[:, D["leg_l"]] = 0.06, -0.06
    if state == "arms_up":
        pose[:, D["arm_r"]], pose[:, D["arm_l"]] = _ARMS_UP, -_ARMS_UP
    else:
        swing = 0.25 * person.arm_swing * sway
        pose[:, D["arm_r"]], pose[:, D["arm_l"]] = 0.12 + swing, -0.12 + swing
        pose[:, D["elbow_r"]], pose[:, D["elbow_l"]] = 0.1, -0.1
    return pose


def _blend(a: np.ndarray, b: np.ndarray, g: np.ndarray) -> np.ndarray:
    return a + (b - a) * g[:, None]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _transition(kind: str, t: np.ndarray, person: Identity, rng: np.random.Generator) -> np.ndarray:
    """Forward transitional action: hold, move over a random duration, hold."""
    duration = t[-1] + (t[1] - t[0] if len(t) > 1 else 0.0)
    move = float(rng.uniform(0.35, 0.55)) * duration
    start = float(rng.uniform(0.1, 0.9)) * (duration - move)
    g = _smoothstep((t - start) / move)
    phase = float(rng.uniform(0, 2 * np.pi))
    begin, end = TRANSITIONS[kind]
    pose = _blend(idle_pose(begin, t, person, phase), idle_pose(end, t, person, phase), g)
    bump = np.sin(np.pi * g)
    if kind == "SitDown":
        pose[:, D["lean"]] += 0.5 * bump  # lean forward while lowering
        pose[:, D["arm_r"]] += 0.5 * bump
        pose[:, D["arm_l"]] += 0.5 * bump
    return pose


def _periodic(name: str, t: np.ndarray, person: Identity, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    phase = float(rng.uniform(0, 2 * np.pi))
    pose = idle_pose("stand", t, person, phase)
    pan = np.zeros(len(t), dtype=np.float32)
    if name in ("WaveSlow", "WaveFast"):
        hz = rng.uniform(0.45, 0.8) if name == "WaveSlow" else rng.uniform(2.0, 2.9)
        w = np.sin(2 * np.pi * hz * t + phase)
        pose[:, D["arm_r"]] = 2.3
        pose[:, D["elbow_r"]] = np.pi - 2.3 + 0.6 * w
    elif name in ("Walk", "Run"):
        fast = name == "Run"
        hz = person.stride_hz * rng.uniform(0.9, 1.1) * (1.7 if fast else 1.0)
        s = np.sin(2 * np.pi * hz * t + phase)
        c = np.cos(2 * np.pi * hz * t + phase)
        amp = 0.75 if fast else 0.42
        pose[:, D["leg_r"]], pose[:, D["leg_l"]] = amp * s, -amp * s
        bend = 1.1 if fast else 0.55
        pose[:, D["knee_r"]] = bend * np.maximum(0, c) + (0.3 if fast else 0.05)
        pose[:, D["knee_l"]] = bend * np.maximum(0, -c) + (0.3 if fast else 0.05)
        swing = person.arm_swing * (1.6 if fast else 1.0)
        pose[:, D["arm_r"]], pose[:, D["arm_l"]] = -swing * s, swing * s
        elbow = 1.4 if fast else 0.25
        pose[:, D["elbow_r"]] = pose[:, D["elbow_l"]] = elbow
        pose[:, D["lean"]] = 0.3 if fast else 0.05
        pose[:, D["lift"]] = (0.05 if fast else 0.012) * np.abs(c)
        pan[:] = 2 * amp * 0.47 * person.limb * hz * (1.3 if fast else 1.0)
    elif name == "Jump":
        hz = rng.uniform(0.7, 1.1)
        s = np.sin(2 * np.pi * hz * t + phase)
        crouch = np.maximum(0, -s)
        pose[:, D["lift"]] = 0.2 * np.maximum(0, s) ** 1.5
        pose[:, D["leg_r"]] = pose[:, D["leg_l"]] = 0.6 * crouch
        pose[:, D["knee_r"]] = pose[:, D["knee_l"]] = 1.2 * crouch
        pose[:, D["lean"]] = 0.35 * crouch
        arms = -0.5 * crouch + 2.4 * np.maximum(0, s)
        pose[:, D["arm_r"]], pose[:, D["arm_l"]] = arms, arms
    elif name == "Punch":
        hz = rng.uniform(0.9, 1.5)
        s = np.sin(2 * np.pi * hz * t + phase)
        for side, ext in (("r", np.maximum(0, s) ** 2), ("l", np.maximum(0, -s) ** 2)):
            pose[:, D[f"arm_{side}"]] = 0.4 + 1.15 * ext
            pose[:, D[f"elbow_{side}"]] = 1.9 * (1 - ext)
        pose[:, D["leg_r"]], pose[:, D["leg_l"]] = 0.3, -0.3
        pose[:, D["knee_r"]] = pose[:, D["knee_l"]] = 0.2
        pose[:, D["lean"]] = 0.12
    elif name == "Kick":
        hz = rng.uniform(0.5, 0.85)
        e = np.maximum(0, np.sin(2 * np.pi * hz * t + phase)) ** 2
        pose[:, D["leg_r"]] = 0.1 + 1.3 * e
        pose[:, D["knee_r"]] = 1.6 * e * (1 - e)
        pose[:, D["arm_r"]], pose[:, D["arm_l"]] = 0.7, -0.7
        pose[:, D["lean"]] = -0.3 * e
    elif name == "Bow":
        hz = rng.uniform(0.35, 0.6)
        e = 0.5 * (1 - np.cos(2 * np.pi * hz * t + phase))
        pose[:, D["lean"]] = 1.25 * e
        pose[:, D["knee_r"]] = pose[:, D["knee_l"]] = 0.2 * e
        pose[:, D["arm_r"]], pose[:, D["arm_l"]] = 0.35 * e + 0.1, 0.35 * e - 0.1
    else:
        raise KeyError(f"unknown periodic action {name!r}")
    return pose, pan


def action_pose(name: str, t: np.ndarray, person: Identity, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pose (T, DOF) and forward body speed (T,) in body units per second for one action."""
    if name in REVERSED:
        pose, pan = action_pose(REVERSED[name], t, person, rng)
        return pose[::-1].copy(), pan[::-1].copy()
    if name in TRANSITIONS:
        return _transition(name, t, person, rng), np.zeros(len(t), dtype=np.float32)
    return _periodic(name, t, person, rng)


def fall_pose(t: np.ndarray, person: Identity, rng: np.random.Generator) -> np.ndarray:
    """Standing, then toppling forward within about a second, then lying still."""
    duration = max(float(t[-1]), 1e-3)
    start = float(rng.uniform(0.0, 0.2)) * duration
    g = _smoothstep((t - start) / float(rng.uniform(0.6, 1.0))) ** 1.5
    pose = idle_pose("stand", t, person, float(rng.uniform(0, 2 * np.pi)))
    pose[:, D["lean"]] = g * np.pi / 2
    pose[:, D["leg_r"]] = pose[:, D["leg_l"]] = -g * np.pi / 2
    pose[:, D["knee_r"]] = pose[:, D["knee_l"]] = 0.3 * np.sin(np.pi * g)
    pose[:, D["arm_r"]] = pose[:, D["arm_r"]] * (1 - g) + 2.2 * g
    pose[:, D["arm_l"]] = pose[:, D["arm_l"]] * (1 - g) + 1.9 * g
    return pose


def fight_pose(t: np.ndarray, person: Identity, rng: np.random.Generator) -> np.ndarray:
    """Fast, irregular punches with a leaning guard."""
    pose, _ = _periodic("Punch", t, person, rng)
    hz = rng.uniform(2.0, 3.0)
    jitter = np.sin(2 * np.pi * hz * 0.37 * t + float(rng.uniform(0, 6.3)))
    s = np.sin(2 * np.pi * hz * t + 1.3 * jitter)
    for side, ext in (("r", np.maximum(0, s) ** 2), ("l", np.maximum(0, -s) ** 2)):
        pose[:, D[f"arm_{side}"]] = 0.5 + 1.1 * ext
        pose[:, D[f"elbow_{side}"]] = 1.9 * (1 - ext)
    pose[:, D["lean"]] = 0.2 + 0.15 * jitter
    return pose


def talk_pose(t: np.ndarray, person: Identity, rng: np.random.Generator) -> np.ndarray:
    """Normal activity for two people: standing and gesturing a little."""
    pose = idle_pose("stand", t, person, float(rng.uniform(0, 2 * np.pi)))
    g = np.sin(2 * np.pi * rng.uniform(0.3, 0.7) * t + float(rng.uniform(0, 6.3)))
    pose[:, D["arm_r"]] = 0.5 + 0.25 * g
    pose[:, D["elbow_r"]] = 1.2 + 0.3 * g
    return pose


def join(pieces: list[np.ndarray], ramp: int = 4) -> np.ndarray:
    """Concatenate pose pieces, removing the jump at each joint with a short correction ramp."""
    out = np.concatenate(pieces, axis=0)
    boundary = 0
    for piece in pieces[:-1]:
        boundary += len(piece)
        if boundary >= len(out):
            break
        jump = out[boundary] - out[boundary - 1]
        n = min(ramp, len(out) - boundary)
        weights = np.linspace(1.0, 0.0, n + 1, dtype=np.float32)[:-1]
        out[boundary : boundary + n] -= weights[:, None] * jump
    return out
