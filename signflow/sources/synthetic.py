"""A generated ISLR-like data set: real mp4 clips + a WLASL-schema index, offline and seeded.

Why it looks the way it does
----------------------------
Each gloss is a *motion*, not an appearance. A cartoon signer (background,
torso, head, two arms) moves two bright hands around two fixed circles in front
of the chest. A gloss is a combination of

* the dominant hand's rotation direction (cw / ccw) and number of turns (1-3),
* the order of three handshapes it cycles through (open -> fist -> point, or
  open -> point -> fist) and how many handshape cycles it makes (1-2),
* the non-dominant hand's rotation direction.

Every sign starts where the hands come up from rest (the bottom of each circle,
open hand first) and makes whole turns and whole handshape cycles, so every
gloss visits the same positions, equally often, with each handshape a third of
the time: the mean frame and the per-frame distribution of hand positions and
handshapes are the same for all glosses, and only the *order* of the visits
(direction, speed, handshape sequence) carries the label, as in real signs that
share handshapes and locations. The test suite checks that a nearest-centroid
classifier on single frames is at chance while the direction of motion
recovered from consecutive frames separates the classes.

Per-signer variation: body position and scale, signing speed, skin, clothing
and background colours, lighting gain and gradient; per repetition: a small
position jitter, speed jitter, start-angle jitter, lead-in/out lengths and pixel noise.
Rest frames before and after the sign are recorded in the index as
``frame_start``/``frame_end`` (1-based, inclusive), like WLASL's YouTube entries.

Splits are signer-independent (the last signers are ``test``, the ones before
them ``val``), so ``split.strategy: official`` measures generalisation to new
signers. Every clip is a function of ``(seed, gloss, signer, repetition)``
only, so the data set is reproducible frame for frame and clip by clip.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from signflow import video
from signflow.config import SyntheticSourceParams
from signflow.index import GlossEntry, Instance

log = logging.getLogger(__name__)

HANDSHAPES = ("open", "fist", "point")
_ORDERS = ((0, 1, 2), (0, 2, 1))


@dataclass(frozen=True)
class Motion:
    """What defines a synthetic gloss (all of it temporal)."""

    direction: int  # +1 counter-clockwise, -1 clockwise (as seen in the image)
    turns: int  # full turns of the dominant hand during the sign
    order: tuple[int, int, int]  # handshape cycle, indices into HANDSHAPES
    cycles: int  # handshape cycles during the sign
    nd_direction: int  # non-dominant hand's rotation direction (one turn)

    @property
    def name(self) -> str:
        rot = "ccw" if self.direction > 0 else "cw"
        nd = "ccw" if self.nd_direction > 0 else "cw"
        order = "".join(HANDSHAPES[i][0] for i in self.order)
        return f"{rot}{self.turns}-{order}{self.cycles}-nd{nd}"


def motion_catalogue() -> list[Motion]:
    """All glosses, most distinct first: the first few differ in the most visible cues."""
    # itertools.product varies the last factor fastest: direction, then the other
    # hand, then handshape order; turns and handshape cycles change only later.
    motions = [
        Motion(direction, turns, order, cycles, nd)
        for cycles, turns, order, nd, direction in itertools.product((1, 2), (1, 2, 3), _ORDERS, (1, -1), (1, -1))
    ]
    return motions


MAX_GLOSSES = len(motion_catalogue())


@dataclass(frozen=True)
class SignerLook:
    dx: float
    dy: float
    scale: float
    speed: float
    skin: np.ndarray
    clothing: np.ndarray
    background: np.ndarray
    gain: float
    gradient: float


_SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 156], [224, 172, 125], [198, 134, 96], [161, 102, 70], [120, 76, 52], [92, 58, 40]],
    dtype=np.float32,
)


def signer_look(seed: int, signer: int, width: int, height: int) -> SignerLook:
    """A signer's appearance and speed; moderate, so the motion stays the dominant signal."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, signer]))
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.95, 1.05, 3)
    background = rng.uniform(20, 120, 3)
    clothing = rng.uniform(15, 110, 3)
    # Keep the torso visibly different from the background (a real person detector's premise).
    while abs(float(clothing.mean() - background.mean())) < 25:
        clothing = rng.uniform(15, 110, 3)
    return SignerLook(
        dx=float(rng.uniform(-0.07, 0.07) * width),
        dy=float(rng.uniform(-0.04, 0.04) * height),
        scale=float(rng.uniform(0.9, 1.1)),
        speed=float(rng.uniform(0.8, 1.25)),
        skin=np.clip(skin, 0, 255).astype(np.float32),
        clothing=clothing.astype(np.float32),
        background=background.astype(np.float32),
        gain=float(rng.uniform(0.88, 1.1)),
        gradient=float(rng.uniform(-0.12, 0.12)),
    )


# --------------------------------------------------------------------------- drawing (anti-aliased, numpy)


class _Canvas:
    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.ys, self.xs = np.mgrid[0:height, 0:width].astype(np.float32)

    def _window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[slice, slice] | None:
        xa, xb = max(0, int(math.floor(x0)) - 1), min(self.width, int(math.ceil(x1)) + 2)
        ya, yb = max(0, int(math.floor(y0)) - 1), min(self.height, int(math.ceil(y1)) + 2)
        if xa >= xb or ya >= yb:
            return None
        return slice(ya, yb), slice(xa, xb)

    @staticmethod
    def _blend(img: np.ndarray, win: tuple[slice, slice], alpha: np.ndarray, color: np.ndarray) -> None:
        region = img[win]
        region += (color - region) * alpha[..., None]

    def ellipse(self, img: np.ndarray, cx: float, cy: float, rx: float, ry: float, color: np.ndarray) -> None:
        win = self._window(cx - rx, cy - ry, cx + rx, cy + ry)
        if win is None:
            return
        q = np.sqrt(((self.xs[win] - cx) / rx) ** 2 + ((self.ys[win] - cy) / ry) ** 2)
        # (q - 1) * min radius approximates the signed distance: a one-pixel soft edge.
        alpha = np.clip(0.5 - (q - 1.0) * min(rx, ry), 0.0, 1.0)
        self._blend(img, win, alpha, color)

    def oriented_ellipse(
        self, img: np.ndarray, cx: float, cy: float, along: float, across: float, ux: float, uy: float, color: np.ndarray
    ) -> None:
        """An ellipse whose ``along`` semi-axis points along the unit vector ``(ux, uy)``."""
        reach = max(along, across)
        win = self._window(cx - reach, cy - reach, cx + reach, cy + reach)
        if win is None:
            return
        dx, dy = self.xs[win] - cx, self.ys[win] - cy
        u, v = dx * ux + dy * uy, -dx * uy + dy * ux
        q = np.sqrt((u / along) ** 2 + (v / across) ** 2)
        alpha = np.clip(0.5 - (q - 1.0) * min(along, across), 0.0, 1.0)
        self._blend(img, win, alpha, color)

    def capsule(
        self, img: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], radius: float, color: np.ndarray
    ) -> None:
        (x0, y0), (x1, y1) = p0, p1
        win = self._window(min(x0, x1) - radius, min(y0, y1) - radius, max(x0, x1) + radius, max(y0, y1) + radius)
        if win is None:
            return
        px, py = self.xs[win] - x0, self.ys[win] - y0
        vx, vy = x1 - x0, y1 - y0
        length2 = vx * vx + vy * vy
        t = np.clip((px * vx + py * vy) / length2, 0.0, 1.0) if length2 > 0 else np.zeros_like(px)
        dist = np.sqrt((px - t * vx) ** 2 + (py - t * vy) ** 2)
        alpha = np.clip(radius - dist + 0.5, 0.0, 1.0)
        self._blend(img, win, alpha, color)


@dataclass(frozen=True)
class _Body:
    cx: float
    head: tuple[float, float, float]
    shoulders: tuple[tuple[float, float], tuple[float, float]]
    centres: tuple[tuple[float, float], tuple[float, float]]  # dominant, non-dominant circle centres
    radius: float
    hand: float
    rest: tuple[tuple[float, float], tuple[float, float]]
    bbox: list[int]


def _body(look: SignerLook, width: int, height: int, jitter: tuple[float, float]) -> _Body:
    unit = height * look.scale
    cx = width / 2 + look.dx + jitter[0]
    base_y = look.dy + jitter[1]
    head = (cx, 0.2 * height + base_y, 0.09 * unit)
    side = 0.27 * unit
    centre_y = 0.58 * height + base_y
    radius, hand = 0.14 * unit, 0.065 * unit
    # The dominant (right) hand is on the image's left: the signer faces the camera.
    centres = ((cx - side, centre_y), (cx + side, centre_y))
    shoulders = ((cx - 0.19 * unit, 0.37 * height + base_y), (cx + 0.19 * unit, 0.37 * height + base_y))
    rest = ((cx - 0.2 * unit, 0.9 * height + base_y), (cx + 0.2 * unit, 0.9 * height + base_y))
    reach = side + radius + 2.5 * hand
    x0, x1 = cx - reach, cx + reach
    y0 = head[1] - head[2] - 0.02 * unit
    bbox = [
        int(max(0, math.floor(x0))),
        int(max(0, math.floor(y0))),
        int(min(width - 1, math.ceil(x1))),
        int(height - 1),
    ]
    return _Body(cx, head, shoulders, centres, radius, hand, rest, bbox)


def _static_layer(canvas: _Canvas, look: SignerLook, body: _Body) -> np.ndarray:
    img = np.empty((canvas.height, canvas.width, 3), dtype=np.float32)
    img[:] = look.background
    unit = body.head[2] / 0.09
    torso_ry = 0.5 * unit
    canvas.ellipse(img, body.cx, body.shoulders[0][1] + torso_ry - 0.03 * unit, 0.25 * unit, torso_ry, look.clothing)
    canvas.capsule(img, (body.cx, body.head[1]), (body.cx, body.shoulders[0][1]), 0.045 * unit, look.skin * 0.8)
    canvas.ellipse(img, body.head[0], body.head[1], body.head[2] * 0.9, body.head[2], look.skin * 0.8)
    return img


def _lighting(width: int, height: int, look: SignerLook) -> np.ndarray:
    ramp = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    return (look.gain * (1.0 + look.gradient * ramp))[None, :, None] * np.ones((height, 1, 1), np.float32)


def _draw_hand(
    canvas: _Canvas,
    img: np.ndarray,
    shoulder: tuple[float, float],
    wrist: tuple[float, float],
    size: float,
    shape: int,
    color: np.ndarray,
) -> None:
    """A hand continuing the forearm: its orientation shows where the hand is, frame by frame.

    A per-frame CNN with global pooling cannot read absolute positions well, but it
    reads orientations; the arm and hand orientation make each frame's hand angle
    visible to it (the same for every gloss, so single frames stay uninformative).
    """
    dx, dy = wrist[0] - shoulder[0], wrist[1] - shoulder[1]
    norm = math.hypot(dx, dy) or 1.0
    ux, uy = dx / norm, dy / norm
    if shape == 0:  # open hand: a big palm along the forearm
        canvas.oriented_ellipse(img, wrist[0] + ux * size * 0.6, wrist[1] + uy * size * 0.6, size * 1.2, size * 0.8, ux, uy, color)
    elif shape == 1:  # fist: small and round
        canvas.ellipse(img, wrist[0] + ux * size * 0.2, wrist[1] + uy * size * 0.2, size * 0.6, size * 0.6, color)
    else:  # pointing: a long thin finger along the forearm
        canvas.oriented_ellipse(img, wrist[0] + ux * size * 0.9, wrist[1] + uy * size * 0.9, size * 1.5, size * 0.32, ux, uy, color)


def render_clip(
    params: SyntheticSourceParams, motion: Motion, look: SignerLook, seed: int, key: tuple[int, int, int]
) -> tuple[np.ndarray, int, int, list[int]]:
    """Frames of one clip ``(T, H, W, 3) uint8``, its 1-based sign range and the signer bbox."""
    width, height = params.width, params.height
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2, *key]))
    jitter = (float(rng.uniform(-1.5, 1.5)), float(rng.uniform(-1.5, 1.5)))
    speed = look.speed * float(rng.uniform(0.93, 1.07))
    # Signs start where the hands come up from rest: the bottom of each circle (with jitter),
    # open hand first. Every gloss then visits the same positions and handshapes, in its own order.
    phase_dom, phase_nd = -math.pi / 2 + rng.uniform(-0.35, 0.35, 2)
    shape_offset = float(rng.uniform(0.0, 0.08))
    lead = params.lead_frames
    lead_in = int(max(0, lead + rng.integers(-1, 2))) if lead else 0
    lead_out = int(max(0, lead + rng.integers(-1, 2))) if lead else 0
    sign_frames = max(8, int(round(params.frames / speed)))

    canvas = _Canvas(width, height)
    body = _body(look, width, height, jitter)
    static = _static_layer(canvas, look, body)
    light = _lighting(width, height, look)
    hand_color = look.skin * 0.25 + 255 * 0.75  # bright (gloved) hands: a strong, learnable signal
    # Sleeves lighter than the torso, so the forearm stays visible in front of it.
    sleeve = np.clip(look.clothing + 55, 0, 255)
    noise_std = params.noise * 255

    def on_circle(which: int, angle: float) -> tuple[float, float]:
        cx, cy = body.centres[which]
        # Image y grows downwards, so -sin makes positive angles counter-clockwise on screen.
        return cx + body.radius * math.cos(angle), cy - body.radius * math.sin(angle)

    def pose(i: int) -> tuple[tuple[float, float], tuple[float, float], int]:
        if i < lead_in or i >= lead_in + sign_frames:
            before = i < lead_in
            # Rest, with a short move into / out of the sign's (random-phase) start / end.
            u_edge = 0.0 if before else 1.0
            steps = min(3, lead_in if before else lead_out)
            k = (lead_in - i) if before else (i - lead_in - sign_frames + 1)
            w = 0.0 if steps == 0 or k > steps else 1.0 - k / (steps + 1)
            dom_edge = on_circle(0, phase_dom + motion.direction * 2 * math.pi * motion.turns * u_edge)
            nd_edge = on_circle(1, phase_nd + motion.nd_direction * 2 * math.pi * u_edge)
            dom = tuple(r + (e - r) * w for r, e in zip(body.rest[0], dom_edge))
            nd = tuple(r + (e - r) * w for r, e in zip(body.rest[1], nd_edge))
            return dom, nd, 1  # fist at rest, for every gloss
        u = (i - lead_in + 0.5) / sign_frames
        dom = on_circle(0, phase_dom + motion.direction * 2 * math.pi * motion.turns * u)
        nd = on_circle(1, phase_nd + motion.nd_direction * 2 * math.pi * u)
        shape = motion.order[int(math.floor((shape_offset + motion.cycles * u) * 3)) % 3]
        return dom, nd, shape

    total = lead_in + sign_frames + lead_out
    frames = np.empty((total, height, width, 3), dtype=np.uint8)
    arm = 0.045 * body.head[2] / 0.09
    for i in range(total):
        dom, nd, shape = pose(i)
        img = static.copy()
        canvas.capsule(img, body.shoulders[1], nd, arm, sleeve)
        canvas.capsule(img, body.shoulders[0], dom, arm, sleeve)
        _draw_hand(canvas, img, body.shoulders[1], nd, body.hand, 0, hand_color)
        _draw_hand(canvas, img, body.shoulders[0], dom, body.hand, shape, hand_color)
        img *= light
        if noise_std > 0:
            img += rng.standard_normal(img.shape, dtype=np.float32) * noise_std
        np.clip(img, 0, 255, out=img)
        frames[i] = (img + 0.5).astype(np.uint8)
    return frames, lead_in + 1, lead_in + sign_frames, body.bbox


def signer_splits(signers: int) -> list[str]:
    """Signer-independent split: the last signers test, the ones before them val (~15 % each)."""
    if signers == 1:
        return ["train"]
    if signers == 2:
        return ["train", "test"]
    held_out = max(1, int(round(0.15 * signers)))
    return ["train"] * (signers - 2 * held_out) + ["val"] * held_out + ["test"] * held_out


def _write_clip(
    params: SyntheticSourceParams, motion: Motion, look: SignerLook, seed: int, key: tuple[int, int, int], path: Path
) -> tuple[int, int, list[int]]:
    frames, start, end, bbox = render_clip(params, motion, look, seed, key)
    # deterministic: same seed -> same bytes (x264's mb-tree is not reproducible; tested).
    video.write_video(path, frames, params.fps, deterministic=True)
    return start, end, bbox


def generate(params: SyntheticSourceParams, seed: int, out_dir: str | Path) -> list[GlossEntry]:
    """Write ``out_dir/videos/<video_id>.mp4`` and return the index entries (with ``file``).

    Clips are independent functions of ``(seed, gloss, signer, repetition)``, so
    they are rendered in ``num_workers`` processes without changing a byte.
    """
    if params.num_glosses > MAX_GLOSSES:
        raise ValueError(f"data.synthetic.num_glosses: at most {MAX_GLOSSES} distinct motions exist")
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    motions = motion_catalogue()[: params.num_glosses]
    looks = [signer_look(seed, s, params.width, params.height) for s in range(params.signers)]
    splits = signer_splits(params.signers)
    jobs = [
        (gloss_index, signer, rep)
        for gloss_index in range(params.num_glosses)
        for signer in range(params.signers)
        for rep in range(params.repetitions)
    ]
    video_ids = {key: f"{number:05d}" for number, key in enumerate(jobs, start=1)}
    started = time.perf_counter()
    results: dict[tuple[int, int, int], tuple[int, int, list[int]]] = {}
    progress = tqdm(total=len(jobs), desc="synthetic", unit="video", disable=None)
    with contextlib.ExitStack() as stack:
        pool = (
            stack.enter_context(ProcessPoolExecutor(max_workers=params.num_workers))
            if params.num_workers > 1
            else None
        )
        futures = {}
        for key in jobs:
            args = (params, motions[key[0]], looks[key[1]], seed, key, out_dir / "videos" / f"{video_ids[key]}.mp4")
            if pool is None:
                results[key] = _write_clip(*args)
                progress.update()
            else:
                futures[pool.submit(_write_clip, *args)] = key
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            progress.update()
    progress.close()

    entries: list[GlossEntry] = []
    for gloss_index, motion in enumerate(motions):
        instances: list[Instance] = []
        for signer in range(params.signers):
            for rep in range(params.repetitions):
                key = (gloss_index, signer, rep)
                start, end, bbox = results[key]
                instances.append(
                    Instance(
                        video_id=video_ids[key],
                        url=f"synthetic://seed{seed}/{motion.name}/{signer}/{rep}",
                        split=splits[signer],
                        signer_id=signer,
                        frame_start=start,
                        frame_end=end,
                        bbox=bbox,
                        fps=params.fps,
                        file=f"videos/{video_ids[key]}.mp4",
                        source="synthetic",
                        instance_id=len(instances),
                        variation_id=0,
                    )
                )
        entries.append(GlossEntry(gloss=motion.name, instances=instances))
    log.info("synthetic: %d videos in %.1fs", len(jobs), time.perf_counter() - started)
    return entries
