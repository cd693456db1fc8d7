# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Offline evaluation of the core Pipeline on a rosbag2: what the node would have published, scored.

One pass over the bag in log-time order: images (sensor_msgs/Image or CompressedImage) and
vision_msgs/Detection2DArray are paired by header stamp (`core.sync.StampSync`, as in the node),
each pair goes through the node's own ROS-free logic (`core.perception.PerceptionEngine` around the
core `Pipeline`: same crops, max_detections, min_score and output fields as the published
FineGrainedDetections; timed), and the labels are compared with the bag's ground truth
(`bags.ground_truth`, read first: it is small). When a `Vocabulary` is given and the ground truth
carries its category and attributes, each object's crop is also ranked against hard negatives (its
caption with one attribute changed, `Vocabulary.hard_negatives`), as in FG-OVD; the frame's crop
embeddings are re-scored for that (`PerceptionEngine.score_latest`), so the image tower runs once per frame.

`evaluate_bag` returns the report (a JSON-able dict) and the per-detection records;
`bag_report.write_report` writes JSON, markdown and PNGs. `--write-bag` output: the image topic
copied unchanged, `/fgclip/detections` (fgclip_msgs/FineGrainedDetections) and
`/fgclip/detections_labeled` (vision_msgs/Detection2DArray: the node's `detections_labeled`,
class_id = query, score = probability, most probable first).
"""

import contextlib
import logging
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgclip_ros.bags import messages
from fgclip_ros.bags.ground_truth import GROUND_TRUTH_TOPIC, FrameTruth, GroundTruthError, ObjectTruth
from fgclip_ros.bags.reader import BagReader, BagTopicError
from fgclip_ros.bags.writer import BagWriter
from fgclip_ros.core.errors import FgclipError
from fgclip_ros.core.image_codec import ImageDecodeError
from fgclip_ros.core.msg_fields import detection_from_message
from fgclip_ros.core.perception import PerceptionEngine
from fgclip_ros.core.sync import StampSync
from fgclip_ros.evaluation import bag_metrics
from fgclip_ros.evaluation.bag_metrics import DetectionRecord
from fgclip_ros.evaluation.ranks import positive_rank
from fgclip_ros.evaluation.vocabulary import Vocabulary

LOG = logging.getLogger("fgclip_ros.evaluate.bag")
OUTPUT_DETECTIONS_TOPIC = "/fgclip/fine_grained_detections"
OUTPUT_LABELED_TOPIC = "/fgclip/detections_labeled"


@dataclass
class EvalBagOptions:
    image_topic: str | None = None  # None: the bag's only Image/CompressedImage topic
    detections_topic: str | None = None  # None: the bag's only Detection2DArray topic
    ground_truth_topic: str = GROUND_TRUTH_TOPIC  # used when present in the bag
    queries: list[str] = field(default_factory=list)
    queries_from_ground_truth: bool = False
    tolerance_s: float = 0.0  # max |image stamp - detections stamp| of a pair (the node's sync.tolerance_s)
    sync_buffer: int = 100  # messages buffered per side while waiting for a partner
    min_score: float = 0.0  # as the node's min_score parameter
    max_detections: int = 100  # as the node's max_detections parameter (0 = all)
    labeled_top_k: int = 5  # --write-bag detections_labeled results per box (0 = all)
    max_frames: int | None = None
    hard_negatives: bool = True
    vocabulary: Vocabulary | None = None  # judges partial queries and builds hard negatives
    warmup: bool = True  # score the first frame once untimed (lazy init, caches)
    write_bag: Path | None = None
    write_bag_storage: str = "mcap"
    progress: bool | None = None  # None: a bar when stderr is a terminal
    on_image: Callable[[], None] | None = None  # called per image message read (a caller's own progress)


@dataclass
class BagEvaluation:
    report: dict
    records: list[DetectionRecord]
    process_ms: list[float]  # per processed frame, in bag order (for plots)
    outputs: list = field(default_factory=list)  # (image stamp ns, FrameOutput) per processed frame


def read_queries_file(path: str | Path) -> list[str]:
    """One query per line; blank lines and lines starting with '#' are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FgclipError(f"queries file {path} does not exist; write one query per line")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _pick_topic(bag: BagReader, given: str | None, msgtypes: tuple[str, ...], role: str, flag: str) -> str:
    if given:
        bag.topic_type(given, msgtypes, role=role)
        return given
    candidates = bag.topics_of_type(*msgtypes)
    if len(candidates) == 1:
        bag.topic_type(candidates[0], msgtypes, role=role)
        return candidates[0]
    found = ", ".join(candidates) if candidates else "none"
    raise BagTopicError(
        f"bag {bag.path}: cannot choose the {role} ({' or '.join(msgtypes)} topics: {found}); pass {flag}"
    )


def read_ground_truth(bag: BagReader, topic: str) -> dict[int, FrameTruth]:
    """stamp_ns -> FrameTruth of every ground-truth message of `topic` (std_msgs/String JSON)."""
    bag.topic_type(topic, (messages.STRING,), role="ground-truth topic")
    truths = {}
    for m in bag.messages([topic]):
        try:
            truth = FrameTruth.from_json(m.msg.data, where=f"{topic} message at t={m.log_time_ns} ns")
        except GroundTruthError as err:
            raise GroundTruthError(f"bag {bag.path}: {err}") from err
        truths[truth.stamp_ns] = truth
    return truths


class _TruthLookup:
    """Ground truth of a frame: same stamp, else the nearest within the pairing tolerance."""

    def __init__(self, truths: dict[int, FrameTruth], tolerance_ns: int):
        self._truths = truths
        self._stamps = sorted(truths)
        self._tolerance_ns = tolerance_ns

    def find(self, *stamps: int) -> FrameTruth | None:
        for stamp in stamps:
            if stamp in self._truths:
                return self._truths[stamp]
        for stamp in stamps:
            i = bisect_left(self._stamps, stamp)
            near = [s for s in self._stamps[max(0, i - 1) : i + 1] if abs(s - stamp) <= self._tolerance_ns]
            if near:
                return self._truths[min(near, key=lambda s: abs(s - stamp))]
        return None


@dataclass
class _Candidates:
    """The true caption (index 0) and its hard negatives: one attribute changed each."""

    captions: list[str]
    families: list[str | None]
    values: list[str]


def hard_negative_candidates(truth: ObjectTruth, vocabulary: Vocabulary | None) -> _Candidates | None:
    """None without a vocabulary or when the ground truth lacks its category/attributes."""
    if vocabulary is None or not vocabulary.describes(truth.category, truth.attributes):
        return None
    attributes = {f: truth.attributes[f] for f in vocabulary.families}
    cands = _Candidates([vocabulary.caption(truth.category, attributes)], [None], [""])
    for caption, family, value in vocabulary.hard_negatives(truth.category, attributes):
        cands.captions.append(caption)
        cands.families.append(family)
        cands.values.append(value)
    return cands


def _rank(record: DetectionRecord, scores: np.ndarray, cands: _Candidates) -> None:
    """FG-OVD rank of the true caption (scores[0]) among its candidates, overall and per family."""
    record.rank = positive_rank(scores[0], scores[1:])
    record.rank_candidates = len(scores)
    for family in dict.fromkeys(f for f in cands.families if f):
        idx = [i for i, f in enumerate(cands.families) if f == family]
        record.family_ranks[family] = positive_rank(scores[0], scores[idx])
        record.family_candidates[family] = 1 + len(idx)
        best = int(np.argmax(scores[idx]))
        won = scores[idx][best] >= scores[0]  # ties are losses, as in the rank
        record.family_predicted[family] = cands.values[idx[best]] if won else record.truth.attributes[family]


@dataclass
class BagInputs:
    """What an evaluation reads from a bag: topics, ground truth and the query set."""

    image_topic: str
    image_type: str
    detections_topic: str
    ground_truth_topic: str | None
    truths: dict[int, FrameTruth]
    queries: list[str]

    @property
    def truth_objects(self) -> list[ObjectTruth]:
        return [o for t in self.truths.values() for o in t.objects]


def _resolve_inputs(bag: BagReader, options: EvalBagOptions) -> BagInputs:
    image_topic = _pick_topic(bag, options.image_topic, messages.IMAGE_TYPES, "image topic", "--image-topic")
    det_topic = _pick_topic(
        bag, options.detections_topic, (messages.DETECTION_ARRAY,), "detections topic", "--detections-topic"
    )
    gt_topic = options.ground_truth_topic if options.ground_truth_topic in bag.topics else None
    truths = read_ground_truth(bag, gt_topic) if gt_topic else {}
    queries = list(dict.fromkeys(options.queries))
    if options.queries_from_ground_truth:
        if not truths:
            raise BagTopicError(
                f"bag {bag.path} has no ground truth ({options.ground_truth_topic}) to take "
                f"queries from; pass --queries-file"
            )
        queries = list(dict.fromkeys(queries + [o.caption for t in truths.values() for o in t.objects]))
    if not queries:
        raise FgclipError("no queries: pass --queries-file and/or --queries-from-ground-truth")
    return BagInputs(image_topic, bag.topic_type(image_topic), det_topic, gt_topic, truths, queries)


def check_bag(bag_path: str | Path, options: EvalBagOptions | None = None) -> BagInputs:
    """Open the bag and resolve topics, ground truth and queries without a model: fail fast on bad bags."""
    with BagReader(bag_path) as bag:
        return _resolve_inputs(bag, options or EvalBagOptions())


def evaluate_bag(bag_path: str | Path, pipeline, options: EvalBagOptions | None = None) -> BagEvaluation:
    """Run `pipeline` over the bag's paired frames and score the labels (see the module docstring)."""
    options = options or EvalBagOptions()
    with BagReader(bag_path) as bag, contextlib.ExitStack() as stack:
        run = _BagRun(bag, pipeline, options)
        run.open_output(stack)
        run.process_messages(stack)
        return run.evaluation()


def evaluate_published(
    bag_path: str | Path,
    published: list,
    ground_truth_topic: str = GROUND_TRUTH_TOPIC,
    tolerance_s: float = 0.0,
    vocabulary: Vocabulary | None = None,
) -> tuple[dict, list[DetectionRecord]]:
    """Score FineGrainedDetections the node published for a bag's frames against the bag's ground truth.

    `published`: fgclip_msgs/FineGrainedDetections messages (rclpy or rosbags: same field names), e.g.
    what the demo collected while replaying the bag into the node. The numbers are computed by the
    same functions as `evaluate_bag`'s, so the two reports can be compared field by field.
    """
    with BagReader(bag_path) as bag:
        truths = read_ground_truth(bag, ground_truth_topic) if ground_truth_topic in bag.topics else {}
    lookup = _TruthLookup(truths, int(round(tolerance_s * 1e9)))
    records: list[DetectionRecord] = []
    queries: list[str] = []
    for frame, msg in enumerate(published):
        stamp = messages.stamp_ns(msg.header)
        detections = [detection_from_message(d) for d in msg.detections]
        records += bag_metrics.records_for_frame(frame, stamp, detections, lookup.find(stamp))
        queries = list(dict.fromkeys(queries + list(msg.queries)))
    truth_objects = [o for t in truths.values() for o in t.objects]
    report = {
        "frames": len(published),
        "frames_with_ground_truth": sum(
            lookup.find(messages.stamp_ns(m.header)) is not None for m in published
        ),
        "labels": bag_metrics.labels_table(records, queries),
        "accuracy": bag_metrics.accuracy_metrics(
            records, bag_metrics.QueryJudge(queries, truth_objects, vocabulary)
        )
        if truths
        else None,
    }
    return report, records


class _HardNegatives:
    """Candidate captions of every attributed ground-truth object, embedded once before the timed pass."""

    def __init__(
        self, engine: PerceptionEngine, truth_objects: list[ObjectTruth], vocabulary: Vocabulary | None
    ):
        self.by_caption: dict[str, _Candidates] = {}
        for obj in truth_objects if vocabulary is not None else []:
            if obj.caption not in self.by_caption:
                cands = hard_negative_candidates(obj, vocabulary)
                if cands is not None:
                    self.by_caption[obj.caption] = cands
        self.captions = list(dict.fromkeys(c for cs in self.by_caption.values() for c in cs.captions))
        self._index = {c: i for i, c in enumerate(self.captions)}
        self._engine = engine
        if self.captions:
            engine.text_embeddings(self.captions)

    def rank_latest_frame(self, records: list[DetectionRecord]) -> None:
        """Rank each valid, attributed detection's crop against its hard negatives.

        Re-scores the frame just processed against every candidate caption (cached text embeddings),
        outside the timed path and without running the image tower again.
        """
        wanted = [
            i
            for i, r in enumerate(records)
            if r.detection.valid and r.truth is not None and r.truth.caption in self.by_caption
        ]
        if not wanted:
            return
        rescored = self._engine.score_latest(self.captions, min_score=-2.0)
        for index in wanted:
            record = records[index]
            cands = self.by_caption[record.truth.caption]
            scores = np.asarray(rescored.detections[index].scores)
            _rank(record, scores[[self._index[c] for c in cands.captions]], cands)


class _BagRun:
    """State of one evaluation pass: inputs, engine, pairing, per-frame results, optional output bag."""

    def __init__(self, bag: BagReader, pipeline, options: EvalBagOptions):
        self.bag, self.pipeline, self.options = bag, pipeline, options
        self.inputs = _resolve_inputs(bag, options)
        self.engine = PerceptionEngine(
            pipeline, max_detections=options.max_detections, min_score=options.min_score
        )
        self.engine.set_queries(self.inputs.queries)
        self.negatives = _HardNegatives(
            self.engine, self.inputs.truth_objects, options.vocabulary if options.hard_negatives else None
        )
        tolerance_ns = int(round(options.tolerance_s * 1e9))
        self.lookup = _TruthLookup(self.inputs.truths, tolerance_ns)
        self.sync = StampSync(
            tolerance_ns, image_buffer=options.sync_buffer, detections_buffer=options.sync_buffer
        )
        self.out: BagWriter | None = None
        self.skipped: Counter = Counter()
        self.records: list[DetectionRecord] = []
        self.decode_ms: list[float] = []
        self.process_ms: list[float] = []
        self.n_dets: list[int] = []
        self.outputs: list = []
        self.frames_with_truth = 0

    def open_output(self, stack: contextlib.ExitStack) -> None:
        if not self.options.write_bag:
            return
        self.out = stack.enter_context(
            BagWriter(self.options.write_bag, storage=self.options.write_bag_storage)
        )
        self.out.add_topic(self.inputs.image_topic, self.inputs.image_type, typestore=self.bag.typestore)
        self.out.add_topic(OUTPUT_DETECTIONS_TOPIC, messages.FINE_GRAINED_DETECTIONS)
        self.out.add_topic(OUTPUT_LABELED_TOPIC, messages.DETECTION_ARRAY)

    def process_messages(self, stack: contextlib.ExitStack) -> None:
        from tqdm import tqdm

        image_topic, det_topic = self.inputs.image_topic, self.inputs.detections_topic
        topics = self.bag.topics
        progress = self.options.progress
        bar = stack.enter_context(
            tqdm(
                total=topics[image_topic].count + topics[det_topic].count,
                desc="eval bag",
                unit="msg",
                disable=None if progress is None else not progress,
            )
        )
        for m in self.bag.messages([image_topic, det_topic]):
            bar.update(1)
            if m.topic == image_topic and self.options.on_image is not None:
                self.options.on_image()
            if self.options.max_frames is not None and len(self.process_ms) >= self.options.max_frames:
                self.skipped["messages after --max-frames"] += 1
                continue
            if m.topic == image_topic:
                if self.out is not None:
                    self.out.write_raw(image_topic, m.raw, m.log_time_ns)
                pair = self.sync.add_image(messages.stamp_ns(m.msg.header), m)
            else:
                pair = self.sync.add_detections(messages.stamp_ns(m.msg.header), m)
            if pair is not None:
                self.process_pair(pair)

    def process_pair(self, pair) -> None:
        start = time.perf_counter()
        try:
            image = messages.image_to_rgb(pair.image.msg, pair.image.msgtype)
        except ImageDecodeError as err:
            self.skipped[f"image not decodable ({err.reason})"] += 1
            LOG.warning("%s at t=%d ns skipped: %s", self.inputs.image_topic, pair.image_stamp_ns, err)
            return
        decoded = time.perf_counter()
        dets = messages.detections_from_msg(pair.detections.msg)
        if self.options.warmup and not self.process_ms:
            self.engine.process(image, dets.boxes, frame=pair.image_stamp_ns, ids=dets.ids)
            decoded = time.perf_counter()
        output = self.engine.process(image, dets.boxes, frame=pair.image_stamp_ns, ids=dets.ids)
        done = time.perf_counter()
        self.decode_ms.append((decoded - start) * 1e3)
        self.process_ms.append((done - decoded) * 1e3)
        self.n_dets.append(len(dets.ids))
        self.outputs.append((pair.image_stamp_ns, output))

        truth = self.lookup.find(pair.detections_stamp_ns, pair.image_stamp_ns)
        self.frames_with_truth += truth is not None
        frame_records = bag_metrics.records_for_frame(
            len(self.process_ms) - 1, pair.image_stamp_ns, output.detections, truth
        )
        self.negatives.rank_latest_frame(frame_records)
        self.records.extend(frame_records)
        if self.out is not None:
            self.write_outputs(pair, dets, output)

    def write_outputs(self, pair, dets: messages.Detections, output) -> None:
        """The node's two outputs for this frame, logged when the later of its inputs was."""
        log_ns = max(pair.image.log_time_ns, pair.detections.log_time_ns)
        store = self.out.typestore
        frame_id = pair.image.msg.header.frame_id
        self.out.write(
            OUTPUT_DETECTIONS_TOPIC,
            messages.make_fine_grained(
                store, pair.image_stamp_ns, frame_id, self.pipeline.name, output.queries, output.detections
            ),
            log_ns,
        )
        top_k = self.options.labeled_top_k
        ranked = [
            [(output.queries[i], p) for i, p in d.ranked(output.min_score, top_k)] for d in output.detections
        ]
        self.out.write(
            OUTPUT_LABELED_TOPIC,
            messages.make_detection_array(store, dets.stamp_ns, dets.frame_id, dets.boxes, dets.ids, ranked),
            log_ns,
        )

    def counts(self) -> dict:
        counters = self.sync.counters
        return {
            "image_messages": counters.received["image"],
            "detection_messages": counters.received["detections"],
            "paired": counters.paired,
            "unpaired_images": counters.received["image"] - counters.paired,
            "unpaired_detections": counters.received["detections"] - counters.paired,
            "sync_overflow": dict(counters.overflow),
            "time_jumps": counters.time_jumps,
            "skipped": dict(self.skipped),
            "frames_processed": len(self.process_ms),
            "frames_with_ground_truth": self.frames_with_truth,
            "detections": len(self.records),
            "detections_rejected": sum(not r.detection.valid for r in self.records),
            "detections_with_ground_truth": sum(r.truth is not None for r in self.records),
            "ground_truth_frames_in_bag": len(self.inputs.truths),
        }

    def evaluation(self) -> BagEvaluation:
        bag, inputs, options = self.bag, self.inputs, self.options
        report = {
            "bag": {
                "path": str(bag.path),
                "storage": bag.storage,
                "duration_s": (bag.end_ns - bag.start_ns) / 1e9,
                "topics": {t.name: {"type": t.msgtype, "count": t.count} for t in bag.topics.values()},
                "image_topic": inputs.image_topic,
                "image_type": inputs.image_type,
                "detections_topic": inputs.detections_topic,
                "ground_truth_topic": inputs.ground_truth_topic,
                "tolerance_s": options.tolerance_s,
            },
            "model": {
                "name": self.pipeline.name,
                "provider": getattr(self.pipeline.encoder, "provider", ""),
                "prompt_template": self.pipeline.query_bank.template,
                "min_score": options.min_score,
                "max_detections": options.max_detections,
                "queries": inputs.queries,
            },
            "counts": self.counts(),
            "timing": bag_metrics.timing_metrics(self.decode_ms, self.process_ms, self.n_dets),
            "labels": bag_metrics.labels_table(self.records, inputs.queries),
            "accuracy": None,
            "ranking": None,
        }
        if inputs.truths:
            vocabulary = options.vocabulary
            judge = bag_metrics.QueryJudge(inputs.queries, inputs.truth_objects, vocabulary)
            report["accuracy"] = bag_metrics.accuracy_metrics(self.records, judge)
            if self.negatives.captions:
                report["ranking"] = bag_metrics.ranking_metrics(
                    self.records, vocabulary.families, vocabulary.family_values
                )
        if self.out is not None:
            report["written_bag"] = str(options.write_bag)
        return BagEvaluation(
            report=report, records=self.records, process_ms=self.process_ms, outputs=self.outputs
        )
