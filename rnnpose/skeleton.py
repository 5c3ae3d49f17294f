"""The 17 COCO person keypoints: names, limbs, left/right flip pairs and OKS sigmas.

Everything that depends on the joint layout imports it from here, so a dataset with
another skeleton would change this module only.
"""

from __future__ import annotations

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_JOINTS: int = len(JOINT_NAMES)

#: Limbs as 0-based joint index pairs (COCO's ``skeleton`` field, which is 1-based).
LIMBS: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
    (3, 5), (4, 6),
)  # fmt: skip

#: For each joint, the joint it becomes under a horizontal flip.
FLIP_INDEX: tuple[int, ...] = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)

#: Per-joint OKS sigmas used by COCO's keypoint evaluation (pycocotools' defaults).
OKS_SIGMAS: np.ndarray = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62,
         1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)  # fmt: skip

#: The order in which Associative Embedding's grouping visits joints (pose-ae-train):
#: head, shoulders, hips, then arms and legs outward.
AE_JOINT_ORDER: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13, 14, 15, 16)


def coco_skeleton_1based() -> list[list[int]]:
    """The limb list in COCO's 1-based ``categories[0]['skeleton']`` format."""
    return [[a + 1, b + 1] for a, b in LIMBS]


def person_category() -> dict:
    """The COCO ``person`` category record with keypoint names and skeleton."""
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(JOINT_NAMES),
        "skeleton": coco_skeleton_1based(),
    }


assert len(FLIP_INDEX) == NUM_JOINTS and sorted(FLIP_INDEX) == list(range(NUM_JOINTS))
assert len(OKS_SIGMAS) == NUM_JOINTS and sorted(AE_JOINT_ORDER) == list(range(NUM_JOINTS))
