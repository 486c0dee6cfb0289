"""Joint layouts: which joint is which, the skeleton graph, and the left/right mirror map.

Numpy-only on purpose: it is imported by the MediaPipe worker (isolated venv), by
normalisation, by the dataset and by the graph model, so all four agree on joint order.

Layouts (``J`` joints, order fixed):

- ``holistic`` (75): MediaPipe Pose 0-32, left hand 33-53, right hand 54-74.
- ``holistic_face`` (93): ``holistic`` + :data:`FACE_SUBSET` (18 FaceMesh points) at 75-92.
- ``hands`` (42): left hand 0-20, right hand 21-41 (the MediaPipe Hands format of
  ``wlasl-hand-keypoints``).

"Left"/"right" are the *signer's* hands, as MediaPipe Holistic reports them
(the signer's right hand is usually on the image's left).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

POSE_JOINTS = 33
HAND_JOINTS = 21

# MediaPipe pose landmark ids used by normalisation and the plausibility checks.
NOSE = 0
LEFT_SHOULDER, RIGHT_SHOULDER = 11, 12
LEFT_ELBOW, RIGHT_ELBOW = 13, 14
LEFT_WRIST, RIGHT_WRIST = 15, 16
HAND_WRIST, HAND_MIDDLE_MCP = 0, 9

# mediapipe.solutions.pose.POSE_CONNECTIONS, copied so the main env never imports mediapipe.
POSE_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12),
    (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18),
    (16, 20), (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27),
    (26, 28), (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
)  # fmt: skip
# Pose joints that swap under a horizontal mirror (the rest map to themselves).
POSE_MIRROR_PAIRS = (
    (1, 4), (2, 5), (3, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 18), (19, 20),
    (21, 22), (23, 24), (25, 26), (27, 28), (29, 30), (31, 32),
)  # fmt: skip
# mediapipe.solutions.hands.HAND_CONNECTIONS.
HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11),
    (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20),
)  # fmt: skip

# A small FaceMesh subset that carries non-manual signals (brows, eyes, mouth) without the
# 468-point mesh: nose tip, chin, eye corners, brows, mouth corners and lips.
FACE_SUBSET = (1, 152, 33, 133, 362, 263, 70, 105, 107, 336, 334, 300, 61, 291, 0, 17, 13, 14)
# Edges between positions in FACE_SUBSET (not FaceMesh ids).
FACE_EDGES = (
    (0, 1), (2, 3), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (12, 14), (14, 13), (13, 15),
    (15, 12), (12, 16), (16, 13), (12, 17), (17, 13), (0, 14),
    (0, 3), (0, 4), (3, 8), (4, 9),  # not in FaceMesh's tesselation: join eyes and brows to the nose
)  # fmt: skip
FACE_MIRROR_PAIRS = ((2, 5), (3, 4), (6, 11), (7, 10), (8, 9), (12, 13))


@dataclass(frozen=True)
class Layout:
    """A joint order with its skeleton: ``parts`` name contiguous joint ranges."""

    name: str
    num_joints: int
    parts: dict[str, tuple[int, int]]  # part -> [start, stop)
    edges: tuple[tuple[int, int], ...]
    mirror: np.ndarray = field(repr=False)  # joint j of the mirrored clip comes from mirror[j]
    root: int = 0  # bone-stream root per connected component is found from here (BFS order)

    def part(self, name: str) -> slice:
        start, stop = self.parts[name]
        return slice(start, stop)

    def has(self, name: str) -> bool:
        return name in self.parts

    def adjacency(self) -> np.ndarray:
        """Symmetric 0/1 ``(J, J)`` adjacency without self loops."""
        adjacency = np.zeros((self.num_joints, self.num_joints), dtype=np.float32)
        for a, b in self.edges:
            adjacency[a, b] = adjacency[b, a] = 1.0
        return adjacency

    def parents(self) -> np.ndarray:
        """Parent of each joint on a BFS tree of the skeleton; roots are their own parent.

        The bone stream is ``x[j] - x[parent[j]]`` (SL-GCN's bone modality); BFS from
        ``root`` (then from the lowest unvisited joint of each other component) makes
        every bone point away from the body centre.
        """
        adjacency = self.adjacency()
        parents = np.full(self.num_joints, -1, dtype=np.int64)
        order = [self.root] + [j for j in range(self.num_joints) if j != self.root]
        for start in order:
            if parents[start] >= 0:
                continue
            parents[start] = start
            queue = [start]
            while queue:
                node = queue.pop(0)
                for neighbour in np.flatnonzero(adjacency[node]):
                    if parents[neighbour] < 0:
                        parents[neighbour] = node
                        queue.append(int(neighbour))
        return parents


def _mirror_map(num_joints: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    mapping = np.arange(num_joints)
    for a, b in pairs:
        mapping[a], mapping[b] = b, a
    return mapping


def _hand_block(offset: int) -> list[tuple[int, int]]:
    return [(a + offset, b + offset) for a, b in HAND_EDGES]


def holistic_layout_name(face: bool) -> str:
    """The layout MediaPipe Holistic fills: pose and hands, plus the face subset with ``landmarks.face``."""
    return "holistic_face" if face else "holistic"


def _holistic(face: bool) -> Layout:
    left, right = POSE_JOINTS, POSE_JOINTS + HAND_JOINTS
    parts = {
        "pose": (0, POSE_JOINTS),
        "left_hand": (left, left + HAND_JOINTS),
        "right_hand": (right, right + HAND_JOINTS),
    }
    # POSE_CONNECTIONS leaves the head (0-10) apart from the body and the mouth (9, 10) apart from
    # the head; join both to the nose so the skeleton is one tree for the bone stream.
    edges = list(POSE_EDGES) + [(NOSE, 9), (NOSE, 10), (NOSE, LEFT_SHOULDER), (NOSE, RIGHT_SHOULDER)]
    edges += _hand_block(left) + _hand_block(right)
    # Tie each hand's wrist to the pose wrist so the graph is one skeleton.
    edges += [(LEFT_WRIST, left + HAND_WRIST), (RIGHT_WRIST, right + HAND_WRIST)]
    pairs = list(POSE_MIRROR_PAIRS) + [(left + k, right + k) for k in range(HAND_JOINTS)]
    num_joints = right + HAND_JOINTS
    if face:
        start = num_joints
        parts["face"] = (start, start + len(FACE_SUBSET))
        edges += [(a + start, b + start) for a, b in FACE_EDGES] + [(NOSE, start)]  # face nose tip - pose nose
        pairs += [(a + start, b + start) for a, b in FACE_MIRROR_PAIRS]
        num_joints += len(FACE_SUBSET)
    return Layout(holistic_layout_name(face), num_joints, parts, tuple(edges), _mirror_map(num_joints, pairs), root=NOSE)


def _hands() -> Layout:
    parts = {"left_hand": (0, HAND_JOINTS), "right_hand": (HAND_JOINTS, 2 * HAND_JOINTS)}
    edges = _hand_block(0) + _hand_block(HAND_JOINTS)
    pairs = [(k, HAND_JOINTS + k) for k in range(HAND_JOINTS)]
    return Layout("hands", 2 * HAND_JOINTS, parts, tuple(edges), _mirror_map(2 * HAND_JOINTS, pairs), root=0)


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (_holistic(False), _holistic(True), _hands())}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown landmark layout {name!r} (known: {', '.join(LAYOUTS)})") from None


def layout_for_joints(num_joints: int) -> Layout:
    """The layout with ``num_joints`` joints (the joint counts are distinct)."""
    for layout in LAYOUTS.values():
        if layout.num_joints == num_joints:
            return layout
    known = ", ".join(f"{layout.name}={layout.num_joints}" for layout in LAYOUTS.values())
    raise ValueError(f"no landmark layout has {num_joints} joints (known: {known})")
