# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The demo (`fgclip-demo`): the sample bag replayed into the real perception node, its answers scored.

`run_demo` does, with every wait bounded and the node always stopped (also on Ctrl-C or an error):

1. opens a private DDS graph (own ROS_DOMAIN_ID, localhost-only discovery; a domain with other
   nodes in it is skipped) and starts `fgclip-perception` there as a subprocess: THE parameter file
   plus the demo's overrides (model, device, `--image-topic /camera/image_raw`,
   `--detections-topic /detections`);
2. writes the sample bag fresh into the output folder while the node loads its model;
3. waits until the node is active, sets the query set on the `queries` topic (every true caption
   of the bag + one hard negative per attribute family) and checks that the node took it;
4. replays the bag at its recorded pace (`ros.bag_player`) while recording `fine_grained_detections`,
   `detections_labeled`, `debug_image` and `/diagnostics`;
5. calls the Query service on the latest frame: each object's true caption against all of its hard
   negatives;
6. stops the node, scores what it published (`evaluate_published`), optionally runs the offline
   evaluator on the same bag for comparison, and writes PNG frames, a bag of the node's outputs and
   the report (JSON + markdown) into the output folder.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from fgclip_ros.core.errors import FgclipError
from fgclip_ros.demo import offline as core_demo
from fgclip_ros.ros.param_file import NODE_NAME, read_node_params
from fgclip_ros.ros.private_graph import (
    DemoClient,
    NodeRunner,
    domain_candidates,
    isolated_env,
    private_graph_env,
    wait_until,
)

NODE = f"/{NODE_NAME}"
QUERY_SERVICE = f"{NODE}/query"
OUTPUT_TOPICS = {  # key -> topic of the node (no namespace; the debug image is private)
    "fine": "/fine_grained_detections",
    "labeled": "/detections_labeled",
    "debug": f"{NODE}/debug_image",
    "diagnostics": "/diagnostics",
}
# Entries run_demo writes into the output folder; only these are removed before a run.
OUTPUT_ENTRIES = (
    "sample_bag",
    "node_outputs",
    "frames",
    "offline",
    "report.json",
    "summary.md",
    "detections.jsonl",
    "node.log",
)

DISCOVERY_WINDOW_S = 1.0  # Fast DDS participants on one host find each other well within this
MATCH_TIMEOUT_S = 30.0
QUERIES_TIMEOUT_S = 120.0  # the node encodes the query set (a big model on a busy CPU takes a while)
DRAIN_TIMEOUT_S = 30.0  # after the replay: wait this long at most for the last answers
DRAIN_IDLE_S = 5.0  # ... and stop earlier when nothing arrived for this long
SERVICE_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class DemoError(FgclipError):
    """The demo could not run to the end; the message says what failed and where to look."""


class DemoUsageError(DemoError):
    """A bad argument: an unknown model, a missing parameter file, a value out of range."""


@dataclass
class DemoOptions:
    out_dir: Path = Path("out/demo")
    model: str = "fgsynth"
    params_file: Path | None = None  # None: the installed config/perception.yaml
    device: str | None = None  # None: the parameter file's
    frames: int = 24
    rate: float = 1.0  # replay speed, 1 = the recorded 5 Hz
    png_frames: int = 4
    domain_id: int | None = None  # None: a free one
    startup_timeout_s: float = 120.0
    offline_check: bool = True


def _wait(predicate, timeout_s: float, what: str) -> None:
    try:
        wait_until(predicate, timeout_s, what)
    except TimeoutError as err:
        raise DemoError(str(err)) from err


def _say(text: str) -> None:
    print(f"[fgclip-demo] {text}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the run
class _Run:
    """State of one demo run; the steps are methods, called in order by `run_demo`."""

    def __init__(self, options: DemoOptions, stack: ExitStack):
        from fgclip_ros.ros.bringup import default_params_file

        self.options = options
        self.stack = stack
        self.out = Path(options.out_dir)
        self.params_file = Path(options.params_file) if options.params_file else default_params_file()
        self.timings: dict[str, float] = {}
        self.started = time.monotonic()
        self.domain_id: int | None = None
        self.client: DemoClient | None = None
        self.node: NodeRunner | None = None
        self.node_exit: int | None = None

    def _timed(self, name: str, since: float) -> None:
        self.timings[name] = time.monotonic() - since

    # ------------------------------------------------------------- 0: checks, output folder
    def prepare(self) -> None:
        from fgclip_ros.core.manifest import load_manifest

        options = self.options
        if options.frames < 1 or not options.rate > 0 or options.png_frames < 0:
            raise DemoUsageError("--frames must be >= 1, --rate > 0 and --png-frames >= 0")
        if not self.params_file.is_file():
            raise DemoUsageError(f"parameter file {self.params_file} not found; give --params-file PATH")
        try:
            load_manifest(options.model)
        except FgclipError as err:
            raise DemoUsageError(
                f"model {options.model!r}: {err} (pass --model with a manifest name from the package's "
                "models/ folder or a path to a manifest .yaml)"
            ) from err
        self.params = read_node_params(self.params_file)
        self.out.mkdir(parents=True, exist_ok=True)
        for name in OUTPUT_ENTRIES:  # only the demo's own files: --out may name a folder with other things
            path = self.out / name
            if path.is_dir():
                import shutil

                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    # ------------------------------------------------------------- 1: private graph + node
    def open_graph(self) -> None:
        requested = self.options.domain_id
        candidates = [requested] if requested is not None else domain_candidates(os.getpid())
        busy = []
        for domain in candidates:
            with ExitStack() as attempt:
                attempt.enter_context(private_graph_env(domain))
                client = DemoClient(domain)
                attempt.callback(client.close)
                time.sleep(DISCOVERY_WINDOW_S)
                others = client.other_nodes()
                perception = [n for n in others if n.rsplit("/", 1)[-1] == NODE_NAME]
                # A domain given with --domain-id may hold other nodes (a viewer, say), but not another node
                # of ours: its topics and services would mix with the demo's.
                if perception or (others and requested is None):
                    busy.append(f"{domain} ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''})")
                    continue
                self.domain_id, self.client = domain, client
                self.stack.push(attempt.pop_all())  # keep the graph (and its environment) for the run
                return
        raise DemoError(
            "no free ROS_DOMAIN_ID: other nodes use "
            + "; ".join(busy)
            + "; pass --domain-id N (1..101) of a free one"
        )

    def start_node(self) -> None:
        from fgclip_ros.bags.sample import DETECTIONS_TOPIC, IMAGE_TOPIC

        args = ["--params-file", str(self.params_file), "--model", self.options.model]
        if self.options.device:
            args += ["--device", self.options.device]
        args += ["--image-topic", IMAGE_TOPIC, "--detections-topic", DETECTIONS_TOPIC]
        self.node_started = time.monotonic()
        self.node = NodeRunner(args, isolated_env(self.domain_id), self.out / "node.log")
        self.stack.callback(self._stop_node)

    def _stop_node(self) -> None:
        if self.node is not None and self.node_exit is None:
            self.node_exit = self.node.stop(STOP_TIMEOUT_S)

    def wait_active(self) -> None:
        deadline = self.node_started + self.options.startup_timeout_s
        state = None
        while True:
            if not self.node.alive():
                self.node_exit = self.node.process.returncode
                raise DemoError(
                    f"the node exited during start-up (exit status {self.node_exit}): "
                    f"{self.node.failure_reason()} - log: {self.node.log_path}"
                )
            try:
                state = self.client.lifecycle_state(NODE, timeout_s=2.0)
            except TimeoutError:
                state = None
            if state == "active":
                break
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the node was not active {self.options.startup_timeout_s:g} s after start (state: "
                    f"{state or 'no answer'}); raise --startup-timeout for a slow model "
                    f"- log: {self.node.log_path}"
                )
            time.sleep(0.5)
        self._timed("node start", self.node_started)
        twins = [n for n in self.client.other_nodes() if n.rsplit("/", 1)[-1] == NODE_NAME]
        if len(twins) > 1:
            raise DemoError(
                f"{len(twins)} {NODE_NAME} nodes in ROS_DOMAIN_ID {self.domain_id}: another graph joined it; "
                "run again or pass --domain-id N"
            )

    # ------------------------------------------------------------- 2: the sample bag
    def write_bag(self) -> None:
        from fgclip_ros.bags.ground_truth import GROUND_TRUTH_TOPIC
        from fgclip_ros.bags.messages import stamp_ns
        from fgclip_ros.bags.reader import BagReader
        from fgclip_ros.bags.sample import (
            DETECTIONS_TOPIC,
            IMAGE_TOPIC,
            SampleBagConfig,
            write_sample_bag,
        )
        from fgclip_ros.evaluation.bag import read_ground_truth

        started = time.monotonic()
        self.bag_path = self.out / "sample_bag"
        self.bag_config = SampleBagConfig(frames=self.options.frames, storage="mcap")
        self.bag_summary = write_sample_bag(self.bag_path, self.bag_config)
        with BagReader(self.bag_path) as bag:
            self.truths = read_ground_truth(bag, GROUND_TRUTH_TOPIC)
            detection_stamps = {stamp_ns(m.msg.header) for m in bag.messages([DETECTIONS_TOPIC])}
            self.image_stamps = sorted(stamp_ns(m.msg.header) for m in bag.messages([IMAGE_TOPIC]))
        self.expected = sorted(detection_stamps & set(self.image_stamps))
        self.truth_objects = [o for t in self.truths.values() for o in t.objects]
        self.queries = core_demo.topic_queries(self.truth_objects)
        self._timed("sample bag", started)

    # ------------------------------------------------------------- 3: outputs, queries
    def subscribe_outputs(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        from fgclip_msgs.msg import FineGrainedDetections

        client = self.client
        self.subscriptions = {
            "fine": client.record(FineGrainedDetections, OUTPUT_TOPICS["fine"], "fine", raw=True),
            "labeled": client.record(Detection2DArray, OUTPUT_TOPICS["labeled"], "labeled", raw=True),
            "debug": client.record(
                Image, OUTPUT_TOPICS["debug"], "debug", depth=2 * self.options.frames + 10
            ),
            "diagnostics": client.record(
                DiagnosticArray, OUTPUT_TOPICS["diagnostics"], "diagnostics", depth=10
            ),
        }
        for key in ("fine", "labeled", "debug"):
            subscription = self.subscriptions[key]
            _wait(
                lambda s=subscription: s.get_publisher_count() >= 1,
                MATCH_TIMEOUT_S,
                f"the node's {subscription.topic_name} publisher",
            )

    def set_queries(self) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String

        started = time.monotonic()
        publisher = self.client.node.create_publisher(
            String, "/queries", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        _wait(
            lambda: publisher.get_subscription_count() >= 1,
            MATCH_TIMEOUT_S,
            "the node's queries subscription",
        )
        payload = String(data=json.dumps(self.queries, ensure_ascii=False))
        deadline = started + QUERIES_TIMEOUT_S
        last_sent = None
        while True:
            if (
                last_sent is None or time.monotonic() - last_sent > 10.0
            ):  # resend: idempotent, covers a lost one
                publisher.publish(payload)
                last_sent = time.monotonic()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DemoError(
                    f"the node did not take the {len(self.queries)} queries within {QUERIES_TIMEOUT_S:g} s "
                    f"- log: {self.node.log_path}"
                )
            try:
                if self.client.get_parameter(NODE, "queries", timeout_s=min(remaining, 10.0)) == self.queries:
                    break
            except TimeoutError:
                pass
            time.sleep(0.2)
        self._timed("queries", started)

    # ------------------------------------------------------------- 4: replay
    def replay(self) -> None:
        from fgclip_ros.bags.sample import DETECTIONS_TOPIC, IMAGE_TOPIC
        from fgclip_ros.ros.bag_player import BagPlayer, BagPlayError

        started = time.monotonic()
        with BagPlayer(self.client.node, self.bag_path, rate=self.options.rate) as player:
            try:
                player.wait_for_subscribers([IMAGE_TOPIC, DETECTIONS_TOPIC], MATCH_TIMEOUT_S)
            except BagPlayError as err:
                raise DemoError(str(err)) from err
            self.play_stats = player.play()
            self._timed("replay", started)
            drain_started = time.monotonic()
            self._drain()
            self._timed("last answers", drain_started)

    def _answered_stamps(self, key: str) -> set[int]:
        from fgclip_ros.bags.messages import stamp_ns

        return {stamp_ns(m.header) for m in self._decoded(key)}

    def _decoded(self, key: str) -> list:
        """The recorded raw messages of `key`, deserialised (cached per count)."""
        from rclpy.serialization import deserialize_message
        from vision_msgs.msg import Detection2DArray

        from fgclip_msgs.msg import FineGrainedDetections

        msg_type = {"fine": FineGrainedDetections, "labeled": Detection2DArray}[key]
        raw = self.client.messages(key)
        cache = self.__dict__.setdefault("_decode_cache", {}).setdefault(key, [])
        cache.extend(deserialize_message(data, msg_type) for data in raw[len(cache) :])
        return cache

    def _drain(self) -> None:
        """Wait for the answers to the last frames: all expected, or nothing new for DRAIN_IDLE_S."""
        expected = set(self.expected)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            answered = self._answered_stamps("fine")
            complete = expected <= answered and answered <= self._answered_stamps("labeled")
            if (
                complete
                or time.monotonic() - self.client.last_receive > DRAIN_IDLE_S
                or not self.node.alive()
            ):
                break
            time.sleep(0.05)
        time.sleep(0.3)  # debug_image of the last frame follows its other two outputs
        if not self.node.alive():
            self.node_exit = self.node.process.returncode
            raise DemoError(
                f"the node exited during the replay (exit status {self.node_exit}): "
                f"{self.node.failure_reason()} - log: {self.node.log_path}"
            )
        if not self._answered_stamps("fine"):
            raise DemoError(
                f"the node answered none of the {len(self.expected)} frames replayed into it "
                f"- log: {self.node.log_path}"
            )

    # ------------------------------------------------------------- 5: Query service
    def query_service(self) -> None:
        from fgclip_ros.core.msg_fields import detection_from_message, stamp_ns
        from fgclip_ros.ros.query_client import QueryUnavailable, call_query

        started = time.monotonic()
        latest = max(self._answered_stamps("fine"))
        frame = self.truths.get(latest)
        queries = core_demo.service_queries(frame) if frame else self.queries[:10]
        try:
            response = call_query(
                self.client.node,
                queries,
                wait_for_next_frame=False,
                service=QUERY_SERVICE,
                connect_timeout_s=SERVICE_TIMEOUT_S,
                executor=self.client.executor,
            )
        except QueryUnavailable as err:
            raise DemoError(f"Query service: {err} - log: {self.node.log_path}") from err
        if not response.success:
            raise DemoError(f"the Query service refused: {response.message}")
        stamp = stamp_ns(response.header)
        answer = [detection_from_message(d) for d in response.detections]
        rows = core_demo.rank_service_answer(list(response.queries), answer, self.truths.get(stamp))
        ranks = [r.rank for r in rows]
        self.service = {
            "frame": self.image_stamps.index(stamp) if stamp in self.image_stamps else None,
            "stamp_ns": stamp,
            "queries": list(response.queries),
            "detections": len(answer),
            "rows": core_demo.rows_as_dicts(rows),
            "mean_rank": sum(ranks) / len(ranks) if ranks else float("nan"),
            "top1": sum(r == 1 for r in ranks) / len(ranks) if ranks else None,
        }
        self._timed("query service", started)

    def node_diagnostics(self) -> dict:
        """The node's /diagnostics values (provider, latency percentiles, counters) after the last frame."""
        period = float(self.params.get("diagnostics_period_s", 1.0))
        seen = len(self.client.messages("diagnostics"))
        try:  # one status published after the replay covers every frame; not worth failing over
            _wait(lambda: len(self.client.messages("diagnostics")) > seen, 2 * period + 1.0, "/diagnostics")
        except DemoError:
            pass
        for msg in reversed(self.client.messages("diagnostics")):
            for status in msg.status:
                if NODE_NAME in status.name:
                    values = {kv.key: kv.value for kv in status.values}
                    values["hardware_id"] = status.hardware_id
                    return values
        return {}

    # ------------------------------------------------------------- 6: evaluation + files
    def evaluate(self) -> tuple[dict, list]:
        from fgclip_ros.bags.messages import stamp_ns
        from fgclip_ros.evaluation.bag import evaluate_published
        from fgclip_ros.evaluation.bag_metrics import QueryJudge
        from fgclip_ros.synth.vocab import VOCABULARY

        started = time.monotonic()
        self.published = sorted(self._decoded("fine"), key=lambda m: stamp_ns(m.header))
        evaluation, records = evaluate_published(self.bag_path, self.published, vocabulary=VOCABULARY)
        published_queries = list(dict.fromkeys(q for m in self.published for q in m.queries))
        self.judge = QueryJudge(published_queries, self.truth_objects, VOCABULARY)
        frame_of_stamp = {stamp: i for i, stamp in enumerate(self.image_stamps)}
        self.objects = core_demo.object_table(records, self.judge, frame_of_stamp)
        self.records = records
        self._timed("evaluation", started)
        return evaluation, records

    def labeled_agreement(self) -> dict:
        """detections_labeled's first result per detection against fine_grained_detections' best query."""
        from fgclip_ros.bags.messages import stamp_ns

        labeled = {stamp_ns(m.header): m for m in self._decoded("labeled")}
        agree = compared = 0
        for fine in self.published:
            other = labeled.get(stamp_ns(fine.header))
            if other is None:
                continue
            for det, lab in zip(fine.detections, other.detections, strict=False):
                if det.valid and det.best_index >= 0 and len(lab.results):
                    compared += 1
                    agree += lab.results[0].hypothesis.class_id == det.best_query and lab.id == det.id
        return {"frames": len(labeled), "compared": compared, "agree": agree}

    def write_frames(self) -> dict[str, list[str]]:
        from fgclip_ros.bags.messages import image_to_rgb, stamp_ns
        from fgclip_ros.bags.reader import BagReader
        from fgclip_ros.bags.sample import IMAGE_TOPIC
        from fgclip_ros.ros.conversions import image_to_rgb as ros_image_to_rgb

        chosen = core_demo.spread([stamp_ns(m.header) for m in self.published], self.options.png_frames)
        debug = {stamp_ns(m.header): m for m in self.client.messages("debug")}
        index = {s: i for i, s in enumerate(self.image_stamps)}
        files: dict[str, list[str]] = {"annotated": [], "debug_image": []}
        with BagReader(self.bag_path) as bag:
            for m in bag.messages([IMAGE_TOPIC]):
                stamp = stamp_ns(m.msg.header)
                if stamp not in chosen:
                    continue
                name = f"frame_{index[stamp]:04d}.png"
                records = [r for r in self.records if r.stamp_ns == stamp]
                image = core_demo.annotate_frame(image_to_rgb(m.msg, m.msgtype), records, self.judge)
                path = core_demo.write_png(self.out / "frames" / f"annotated_{name}", image)
                files["annotated"].append(str(path.relative_to(self.out)))
                if stamp in debug:  # the node's own overlay, as it published it
                    path = core_demo.write_png(
                        self.out / "frames" / f"debug_image_{name}", ros_image_to_rgb(debug[stamp])
                    )
                    files["debug_image"].append(str(path.relative_to(self.out)))
        return files

    def write_outputs_bag(self) -> Path:
        """The node's two label topics as received (CDR bytes unchanged), logged at their header stamps."""
        from fgclip_ros.bags import messages

        topics = {}
        for key, msgtype in (
            ("fine", messages.FINE_GRAINED_DETECTIONS),
            ("labeled", messages.DETECTION_ARRAY),
        ):
            stamps = [messages.stamp_ns(m.header) for m in self._decoded(key)]
            topics[OUTPUT_TOPICS[key]] = (msgtype, list(zip(stamps, self.client.messages(key), strict=True)))
        return core_demo.write_raw_bag(self.out / "node_outputs", topics)

    def offline_check(self) -> dict:
        started = time.monotonic()
        result = core_demo.offline_evaluation(
            self.bag_path,
            self.options.model,
            self.params,
            self.options.device or str(self.params.get("device", "auto")),
            self.queries,
            self.records,
            self.judge,
            self.out / "offline",
        )
        self._timed("offline check", started)
        return result


def run_demo(options: DemoOptions, command: str = "fgclip-demo") -> dict:
    """Run the demo (module docstring); returns the report that was written. DemoError on failure."""
    started = time.monotonic()
    with ExitStack() as stack:
        run = _Run(options, stack)
        run.prepare()
        run.open_graph()
        _say(f"private ROS graph: ROS_DOMAIN_ID={run.domain_id}, localhost-only discovery")
        run.start_node()
        _say(f"started the node: {run.node.command} (log: {run.node.log_path})")
        run.write_bag()
        _say(
            f"sample bag {run.bag_path}: {run.bag_summary.frames} frames at {run.bag_config.rate_hz:g} Hz, "
            f"{run.bag_summary.objects} objects"
        )
        run.wait_active()
        _say(f"node active after {run.timings['node start']:.1f} s (model {options.model})")
        run.subscribe_outputs()
        run.set_queries()
        _say(f"queries topic: {len(run.queries)} queries (true captions + hard negatives) taken by the node")
        _say(f"replaying {len(run.image_stamps)} frames at {options.rate:g}x the recorded rate ...")
        run.replay()
        answered = len(run._answered_stamps("fine"))
        _say(
            f"replayed in {run.timings['replay']:.1f} s; "
            f"the node answered {answered} of {len(run.expected)} frames"
        )
        if answered < len(run.expected):
            _say(
                "warning: some frames got no answer (the node's input QoS is best effort with a short queue: "
                "a model slower than the replay drops frames; try --rate 0.5)"
            )
        run.query_service()
        _say(f"Query service: {len(run.service['queries'])} queries on the latest frame answered")
        diagnostics = run.node_diagnostics()
        _say(f"the node ran the model on {diagnostics.get('hardware_id') or 'an unreported provider'} "
             f"(backend {run.params.get('backend', 'auto')})")
        stack.close()  # stops the node and closes the graph before the offline work
        if run.node_exit != 0:
            _say(f"warning: the node exited with status {run.node_exit} when stopped ({run.node.log_path})")
        evaluation, records = run.evaluate()
        frames = run.write_frames()
        outputs_bag = run.write_outputs_bag()
        offline = None
        if options.offline_check:
            _say("offline check: the same bag through evaluate_bag (same model and parameters) ...")
            offline = run.offline_check()
    report = {
        "demo": {
            "command": command,
            "model": options.model,
            "provider": diagnostics.get("hardware_id", ""),
            "params_file": str(run.params_file),
            "domain_id": run.domain_id,
            "bag": str(run.bag_path),
            "bag_frames": run.bag_summary.frames,
            "bag_rate_hz": run.bag_config.rate_hz,
            "bag_objects": run.bag_summary.objects,
            "replay_rate": options.rate,
            "published": dict(run.play_stats.published),
            "replay_max_late_s": run.play_stats.max_late_s,
            "frames_expected": len(run.expected),
            "frames_answered": len(run.published),
            "node_exit_status": run.node_exit,
            "node_diagnostics": diagnostics,
            "timings_s": run.timings,
            "wall_s": time.monotonic() - started,
        },
        "queries": {"topic": run.queries, "service": run.service["queries"]},
        "evaluation": evaluation,
        "objects": run.objects,
        "service": run.service,
        "labeled_agreement": run.labeled_agreement(),
        "offline": offline,
        "files": {**frames, "node_outputs": str(outputs_bag.relative_to(run.out)), "node_log": "node.log"},
    }
    report["files"].update({name: name for name in ("report.json", "summary.md", "detections.jsonl")})
    core_demo.write_report_files(run.out, report, records)
    return report
