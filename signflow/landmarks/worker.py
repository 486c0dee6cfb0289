"""MediaPipe Holistic worker: runs inside ``.venv-landmarks``, never in the main environment.

Why a separate process and interpreter: the MediaPipe wheels that still bundle
the Holistic models (<= 0.10.21) need protobuf < 5 and numpy < 2, while the main
environment's kfp needs protobuf 6. :mod:`signflow.landmarks.pool` starts this module as

    .venv-landmarks/bin/python -m signflow.landmarks.worker --config '{"model_complexity": 1, ...}'

and talks JSON lines to it: one *task* a line on stdin, one *result* a line on
the protocol stream (the original stdout; the process's fd 1 is pointed at
stderr first, so a stray print from native code cannot corrupt the protocol).

Task: ``{"key", "path", "start", "stop", "box", "out", "max_frames"}`` (``stop``,
``box``, ``max_frames`` may be null). Result: ``{"key", "ok": true, "frames",
"width", "height", "detected": {part: frames seen}, "seconds"}`` after writing
``out`` (``.npz``: ``points`` float32 ``(T, J, 3)`` = MediaPipe's normalised
x, y (fractions of the processed frame) and z; ``mask`` bool ``(T, J)``;
``score`` float16 ``(T, J)`` = pose visibility, 1 for seen hand/face points),
or ``{"key", "ok": false, "reason", "detail"}``. One bad video never ends the
worker; EOF on stdin does.

Imports only numpy, av (through :mod:`signflow.video`), mediapipe and the
numpy-only :mod:`signflow.landmarks.layout`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from signflow import video
from signflow.landmarks.layout import (
    FACE_SUBSET,
    HAND_JOINTS,
    POSE_JOINTS,
    Layout,
    get_layout,
    holistic_layout_name,
)


class Extractor:
    """One MediaPipe Holistic graph, reused across videos (reset between them)."""

    def __init__(
        self,
        *,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        face: bool = False,
    ):
        # Imported here, not at module level, so ``--help`` and the layout tables work without it.
        import mediapipe as mp

        self.layout: Layout = get_layout(holistic_layout_name(face))
        self.face = face
        self._holistic = mp.solutions.holistic.Holistic(
            static_image_mode=False,  # tracking across frames: faster and steadier on video
            model_complexity=model_complexity,
            smooth_landmarks=True,
            refine_face_landmarks=False,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def close(self) -> None:
        self._holistic.close()

    def frame(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Landmarks of one RGB frame: ``points (J, 3)``, ``mask (J,)``, ``score (J,)``."""
        result = self._holistic.process(np.ascontiguousarray(rgb))
        num_joints = self.layout.num_joints
        points = np.zeros((num_joints, 3), dtype=np.float32)
        mask = np.zeros(num_joints, dtype=bool)
        score = np.zeros(num_joints, dtype=np.float32)
        parts: list[tuple[Any, int, tuple[int, ...] | None]] = [
            (result.pose_landmarks, 0, None),
            (result.left_hand_landmarks, POSE_JOINTS, None),
            (result.right_hand_landmarks, POSE_JOINTS + HAND_JOINTS, None),
        ]
        if self.face:
            parts.append((result.face_landmarks, POSE_JOINTS + 2 * HAND_JOINTS, FACE_SUBSET))
        for landmarks, offset, subset in parts:
            if landmarks is None:
                continue
            marks = landmarks.landmark
            chosen = [marks[i] for i in subset] if subset is not None else list(marks)
            stop = offset + len(chosen)
            points[offset:stop] = [(m.x, m.y, m.z) for m in chosen]
            mask[offset:stop] = True
            # Only pose landmarks carry a meaningful visibility; a seen hand/face point scores 1.
            score[offset:stop] = [m.visibility for m in chosen] if offset == 0 else 1.0
        return points, mask, score

    def video(
        self,
        path: str,
        start: int = 0,
        stop: int | None = None,
        box: list[int] | None = None,
        max_frames: int | None = None,
    ) -> dict[str, Any]:
        """All frames ``[start, stop)`` of ``path`` (cropped to ``box`` = [x0, y0, x1, y1] if given)."""
        self._holistic.reset()  # new clip: no tracking state carried over from the last one
        points, masks, scores = [], [], []
        width = height = 0
        for _, rgb in video.iter_frames(path, start, stop):
            if box is not None:
                x0, y0, x1, y1 = (int(v) for v in box)
                rgb = rgb[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
                if rgb.size == 0:
                    raise video.VideoError("corrupt", f"{Path(path).name}: crop box {box} is outside the frame")
            height, width = rgb.shape[:2]
            frame_points, frame_mask, frame_score = self.frame(rgb)
            points.append(frame_points)
            masks.append(frame_mask)
            scores.append(frame_score)
            if max_frames is not None and len(points) > max_frames:
                raise video.VideoError("too_large", f"{Path(path).name}: more than {max_frames} frames")
        if not points:
            raise video.VideoError("no_frames", f"{Path(path).name}: no frames in range [{start}, {stop})")
        return {
            "points": np.stack(points),
            "mask": np.stack(masks),
            "score": np.stack(scores).astype(np.float16),
            "width": width,
            "height": height,
        }


def detected_frames(mask: np.ndarray, layout: Layout) -> dict[str, int]:
    """Frames in which each part (pose, left_hand, right_hand, face) was seen, and ``any_hand``."""
    seen = {part: mask[:, layout.part(part)].any(axis=1) for part in layout.parts}
    counts = {part: int(frames.sum()) for part, frames in seen.items()}
    counts["any_hand"] = int((seen["left_hand"] | seen["right_hand"]).sum())
    return counts


def handle(extractor: Extractor, task: dict[str, Any]) -> dict[str, Any]:
    key = task.get("key")
    started = time.perf_counter()
    try:
        clip = extractor.video(
            task["path"], int(task.get("start") or 0), task.get("stop"), task.get("box"), task.get("max_frames")
        )
    except video.VideoError as error:
        return {"key": key, "ok": False, "reason": error.reason, "detail": error.detail}
    except Exception as error:  # noqa: BLE001 - one bad clip must not end the worker; the reason is kept
        return {"key": key, "ok": False, "reason": "extract_error", "detail": f"{type(error).__name__}: {error}"}
    out = Path(task["out"])
    tmp = out.with_name(f".tmp-{out.name}")
    with open(tmp, "wb") as handle_:
        np.savez(handle_, points=clip["points"], mask=clip["mask"], score=clip["score"])
    os.replace(tmp, out)
    return {
        "key": key,
        "ok": True,
        "frames": len(clip["points"]),
        "width": clip["width"],
        "height": clip["height"],
        "detected": detected_frames(clip["mask"], extractor.layout),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _protocol_stream() -> TextIO:
    """Keep the real stdout for results; send fd 1 (native prints) to stderr."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return protocol


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="{}", help="JSON: model_complexity, min_detection_confidence, face")
    args = parser.parse_args(argv)
    config = json.loads(args.config)
    protocol = _protocol_stream()
    extractor = Extractor(
        model_complexity=int(config.get("model_complexity", 1)),
        min_detection_confidence=float(config.get("min_detection_confidence", 0.5)),
        min_tracking_confidence=float(config.get("min_tracking_confidence", 0.5)),
        face=bool(config.get("face", False)),
    )
    protocol.write(json.dumps({"ready": True, "layout": extractor.layout.name}) + "\n")
    try:
        for line in sys.stdin:
            if line.strip():
                protocol.write(json.dumps(handle(extractor, json.loads(line))) + "\n")
    finally:
        extractor.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
