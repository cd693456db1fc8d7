# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Ground truth that travels inside a bag: one std_msgs/String JSON document per frame.

Topic `/fgclip/ground_truth` (GROUND_TRUTH_TOPIC), log time = the frame's header stamp. Document:

    {"schema": "fgclip_ros.ground_truth/1", "stamp_ns": 1767225600000000000, "frame_id": "camera",
     "objects": [{"id": "f0000-0", "caption": "an opaque red striped plastic mug",
                  "category": "mug", "attributes": {"color": "red", "material": "plastic", ...},
                  "box_xyxy": [12.0, 30.0, 80.0, 120.0]}]}

`id` is the Detection2D.id of the object's detection in the frame with the same stamp; `caption`
is the only other required field. `category` + `attributes` (values of the synth world's
vocabulary) let the evaluator build hard negatives; `box_xyxy` (exact, not the detector's)
lets it match detections that carry no id (IoU >= 0.5).
"""

import json
from dataclasses import dataclass, field

from fgclip_ros.core.errors import FgclipError

GROUND_TRUTH_TOPIC = "/fgclip/ground_truth"
GROUND_TRUTH_SCHEMA = "fgclip_ros.ground_truth/1"


class GroundTruthError(FgclipError):
    """A ground-truth document is not valid JSON or lacks a required field."""


@dataclass
class ObjectTruth:
    id: str
    caption: str
    category: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    box_xyxy: tuple[float, float, float, float] | None = None

    def to_dict(self) -> dict:
        out = {"id": self.id, "caption": self.caption}
        if self.category is not None:
            out["category"] = self.category
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        if self.box_xyxy is not None:
            out["box_xyxy"] = [float(v) for v in self.box_xyxy]
        return out


@dataclass
class FrameTruth:
    stamp_ns: int
    objects: list[ObjectTruth]
    frame_id: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema": GROUND_TRUTH_SCHEMA,
                "stamp_ns": int(self.stamp_ns),
                "frame_id": self.frame_id,
                "objects": [o.to_dict() for o in self.objects],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, where: str = "ground truth") -> "FrameTruth":
        try:
            doc = json.loads(text)
            if doc.get("schema", GROUND_TRUTH_SCHEMA) != GROUND_TRUTH_SCHEMA:
                raise GroundTruthError(f"{where}: schema {doc['schema']!r}, expected {GROUND_TRUTH_SCHEMA!r}")
            objects = []
            for i, obj in enumerate(doc["objects"]):
                if "caption" not in obj:
                    raise GroundTruthError(f"{where}: object {i} has no 'caption'")
                box = obj.get("box_xyxy")
                objects.append(
                    ObjectTruth(
                        id=str(obj.get("id", "")),
                        caption=str(obj["caption"]),
                        category=obj.get("category"),
                        attributes={str(k): str(v) for k, v in (obj.get("attributes") or {}).items()},
                        box_xyxy=tuple(float(v) for v in box) if box is not None else None,
                    )
                )
            return cls(stamp_ns=int(doc["stamp_ns"]), objects=objects, frame_id=str(doc.get("frame_id", "")))
        except GroundTruthError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise GroundTruthError(f"{where} is not a {GROUND_TRUTH_SCHEMA} document: {err!r}") from err
