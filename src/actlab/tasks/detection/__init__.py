"""Object detection: default boxes, matching, multibox loss, NMS/decoding and mAP.

Modules: :mod:`.boxes` (geometry, SSD encoding), :mod:`.priors` (default boxes),
:mod:`.targets` (the packed target format of detection datasets), :mod:`.matching`,
:mod:`.loss` (multibox + hard-negative mining), :mod:`.nms` (NMS, post-processing),
:mod:`.metrics` (VOC and COCO-style mAP) and :mod:`.task` (:class:`DetectionTask`).
"""

from actlab.tasks.detection.boxes import (
    VARIANCES,
    box_iou,
    centres_to_corners,
    corners_to_centres,
    decode,
    encode,
)
from actlab.tasks.detection.loss import MultiboxParts, hard_negatives, multibox_parts
from actlab.tasks.detection.matching import match
from actlab.tasks.detection.metrics import coco_map, voc_ap, voc_map
from actlab.tasks.detection.nms import Detections, batched_nms, nms, postprocess
from actlab.tasks.detection.priors import SSD300_PRIORS, PriorSpec, make_priors
from actlab.tasks.detection.targets import (
    COLUMNS,
    ImageTargets,
    check_targets,
    pack_targets,
    unpack_targets,
)
from actlab.tasks.detection.task import DetectionTask, random_hflip_boxes

__all__ = [
    "COLUMNS", "Detections", "DetectionTask", "ImageTargets", "MultiboxParts", "PriorSpec",
    "SSD300_PRIORS", "VARIANCES", "batched_nms", "box_iou", "centres_to_corners",
    "check_targets", "coco_map", "corners_to_centres", "decode", "encode", "hard_negatives",
    "make_priors", "match", "multibox_parts", "nms", "pack_targets", "postprocess",
    "random_hflip_boxes", "unpack_targets", "voc_ap", "voc_map",
]
