# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The ``fgclip_perception`` lifecycle node: a thin rclpy shell around ``core.perception.PerceptionEngine``.

configure loads the model (and fails the transition with the reason logged), activate creates the
subscriptions, deactivate removes them, cleanup releases the model (and its GPU memory).
Threads: the image and detections callbacks only pair messages by stamp; by default one frame
worker thread processes the newest complete pair and older unprocessed pairs are dropped as
``stale`` (``processing.every_frame`` processes every pair in order instead, for bags and offline
evaluation). The Query service runs in a reentrant group; at most MAX_WAITING_QUERIES calls wait
for the next frame at a time (each holds its executor thread, at most MAX_WAIT_S), further ones
are answered "busy" at once, so waiting calls never starve lifecycle, parameters or diagnostics.
Every callback is guarded (ros/callback_guard.py): an unforeseen exception is counted and logged,
never raised into the executor.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time

from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from vision_msgs.msg import Detection2DArray

from fgclip_msgs.msg import FineGrainedDetections
from fgclip_msgs.srv import Query
from fgclip_ros.core.device import resolve_device
from fgclip_ros.core.errors import FgclipError
from fgclip_ros.core.frame_waiters import BUSY, CLOSED, TIMEOUT, FrameWaiters
from fgclip_ros.core.image_codec import ImageDecodeError
from fgclip_ros.core.latest_slot import LatestSlot
from fgclip_ros.core.manifest import load_manifest
from fgclip_ros.core.perception import PerceptionEngine
from fgclip_ros.core.query_text import QueryError, parse_queries_text, validate_queries
from fgclip_ros.core.rate_limit import CountedWarnings
from fgclip_ros.core.stats import RateLatencyStats
from fgclip_ros.core.sync import DETECTIONS, IMAGE, StampSync
from fgclip_ros.ros import conversions, diagnostics
from fgclip_ros.ros.callback_guard import CallbackGuard
from fgclip_ros.ros.param_file import NODE_NAME
from fgclip_ros.ros.params import NodeParams, attribute, check_value, declare_all, read_all

QUERY_SERVICE = "~/query"
IMAGE_TOPIC, DETECTIONS_TOPIC, QUERIES_TOPIC = "image", "detections", "queries"  # relative: remap them
DEBUG_IMAGE = "~/debug_image"
COMPRESSED_SUFFIX = "/compressed"  # image_transport's name for the compressed transport of a base topic
MAX_WAIT_S = 10.0  # longest wait_for_next_frame honoured (docs/node.md)
MAX_WAITING_QUERIES = 4  # of the bringup's 8 executor threads
_SUCCESS, _FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE

# QoS defaults; every subscription and publisher takes ROS 2's standard overrides
# (`qos_overrides.<resolved topic>.<publisher|subscription>.<policy>` parameters, at creation).
# Image and detections are sensor data (REP 2003): best effort, keep last 5, each overridable alone.
SENSOR_QOS = qos_profile_sensor_data
OUTPUT_QOS = QoSProfile(depth=10)  # reliable, volatile


def _overridable() -> QoSOverridingOptions:
    return QoSOverridingOptions.with_default_policies()


def _guarded_transition(method):
    """A lifecycle transition whose unforeseen exception is counted and logged; the transition errors."""

    @functools.wraps(method)
    def run(self, state):
        try:
            return method(self, state)
        except Exception as exc:  # noqa: BLE001 - the callback boundary
            self._guard.report(f"lifecycle_{method.__name__}", exc)
            return TransitionCallbackReturn.ERROR

    return run


class _RosLogHandler(logging.Handler):
    """Forwards the core library's ``fgclip_ros.*`` log records to the node's ROS logger."""

    def __init__(self, ros_logger):
        super().__init__()
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"[{record.name}] {record.getMessage()}"
            if record.levelno >= logging.ERROR:
                self._ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self._ros_logger.warning(text)
            elif record.levelno >= logging.INFO:
                self._ros_logger.info(text)
            else:
                self._ros_logger.debug(text)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def _model_problem(model: str) -> str | None:
    """None when ``model`` names a readable manifest (by name or path), else the reason."""
    try:
        load_manifest(model)
    except Exception as exc:  # noqa: BLE001 - any unreadable manifest is refused with its reason
        return f"model {model!r} refused: {exc}"
    return None


class PerceptionNode(LifecycleNode):
    """Fine-grained scoring of a detector's boxes against free-text queries (see docs/node.md)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        declare_all(self)
        self._params: NodeParams = read_all(self)
        self._log_handler = _RosLogHandler(self.get_logger())
        core_logger = logging.getLogger("fgclip_ros")
        core_logger.addHandler(self._log_handler)
        core_logger.setLevel(logging.INFO)
        # The ROS logger prints these records; a root handler (basicConfig somewhere) must not repeat them.
        self._core_logger_propagated = core_logger.propagate
        core_logger.propagate = False

        self._warnings = CountedWarnings(self.get_logger().warning, self._params.warn_period_s)
        self._guard = CallbackGuard(lambda kind, message: self._warnings.warn(kind, message))
        self._engine: PerceptionEngine | None = None
        self._loaded_model = ""
        self._slot: LatestSlot | None = None
        self._worker: threading.Thread | None = None
        self._stale = 0
        self._dds_lost = {IMAGE: 0, DETECTIONS: 0}
        self._waiters = FrameWaiters(MAX_WAITING_QUERIES)
        self._sync: StampSync | None = None
        self._stats: RateLatencyStats | None = None
        self._active = False
        self._manifest_template = "{}"
        self._device_in_use = ""
        self._last_error = ""
        self._boxes_rejected = 0
        self._problems_reported = 0
        self._outputs: dict[str, object] = {}
        self._subscriptions_io: list = []
        self._query_service = None
        self._diag_publisher = None
        self._diag_timer = None

        self._frame_group = MutuallyExclusiveCallbackGroup()
        self._service_group = ReentrantCallbackGroup()
        self._diag_group = MutuallyExclusiveCallbackGroup()
        self.add_on_set_parameters_callback(
            self._guard.wrap(
                "set_parameters",
                self._on_set_parameters,
                lambda problem: SetParametersResult(successful=False, reason=f"internal error: {problem}"),
            )
        )

        # `autostart`: configure + activate once the executor spins the node (every start path).
        self._autostart_result: Future | None = None
        self._autostart_timer = None
        if self._params.autostart:
            self._autostart_result = Future()
            self._autostart_timer = self.create_timer(0.01, self._autostart_once)

    # ================================================================== lifecycle
    @property
    def autostart_result(self) -> Future | None:
        """None with autostart off; else done once autostart ended: True active, False a transition failed."""
        return self._autostart_result

    def _autostart_once(self) -> None:
        self.destroy_timer(self._autostart_timer)
        self._autostart_timer = None
        started = self._guard.wrap("autostart", self._autostart, lambda problem: False)()
        self._autostart_result.set_result(started)

    def _autostart(self) -> bool:
        """Configure + activate; False (reason logged) when either transition fails."""
        for name, trigger in (("configure", self.trigger_configure), ("activate", self.trigger_activate)):
            if trigger() != _SUCCESS:
                if self.context.ok():  # else stopped during start-up: not a failure to report
                    reason = self._last_error or "see the log above"
                    self.get_logger().error(f"autostart: {name} failed: {reason}")
                return False
        return True

    @property
    def last_error(self) -> str:
        return self._last_error

    @_guarded_transition
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from fgclip_ros.export.deploy import deployed_pipeline  # torch/open_clip: only when a model is loaded

        params = self._params = read_all(self)
        self._last_error = ""
        # The parameter file's values are not seen by the set-parameters check: check this one here.
        bad_size = check_value("image_size", params.image_size)
        if bad_size:
            self._last_error = bad_size
            self.get_logger().error(f"configure failed: {bad_size}")
            return _FAILURE
        try:
            device = resolve_device(params.device)
        except FgclipError as exc:
            self._last_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            return _FAILURE
        started = time.perf_counter()
        try:
            pipeline = deployed_pipeline(
                params.model,
                backend=params.backend,
                device=device,
                dtype=params.dtype,
                quantize=params.quantize,
                intra_op_threads=params.intra_op_threads,
                context_scale=params.context_scale,
            )
            self._manifest_template = pipeline.query_bank.template
            engine = PerceptionEngine(
                pipeline, max_detections=params.max_detections, min_score=params.min_score
            )
            queries = validate_queries(params.queries, params.max_queries, params.max_query_chars)
            engine.set_queries(queries, params.prompt_template or self._manifest_template)
            pipeline.warmup()
            if all(params.image_size):
                pipeline.prepare_frames(*params.image_size)
        except Exception as exc:  # noqa: BLE001 - any failure must fail the transition, with its reason
            self._last_error = (
                f"cannot load model {params.model!r} (backend {params.backend}, device {device}, "
                f"dtype {params.dtype}): {type(exc).__name__}: {exc}"
            )
            self.get_logger().error(f"configure failed: {self._last_error}")
            self._release_model()
            return _FAILURE
        if not self.context.ok():  # SIGINT/SIGTERM while the model loaded (autostart): nothing to start
            engine.close()
            self._last_error = "stopped while configuring"
            return _FAILURE
        self._engine = engine
        self._loaded_model = params.model
        self._device_in_use = device
        self._stats = RateLatencyStats(window_s=params.stats_window_s)
        self._warnings = CountedWarnings(self.get_logger().warning, params.warn_period_s)
        self._boxes_rejected = 0
        self._problems_reported = 0

        outputs = {
            "fine_grained": (FineGrainedDetections, "fine_grained_detections"),
            "labeled": (Detection2DArray, "detections_labeled"),
            "debug": (Image, DEBUG_IMAGE),
        }
        self._outputs = {
            key: self.create_lifecycle_publisher(
                msg_type, topic, OUTPUT_QOS, qos_overriding_options=_overridable()
            )
            for key, (msg_type, topic) in outputs.items()
        }
        self._query_service = self.create_service(
            Query,
            QUERY_SERVICE,
            self._guard.wrap("query", self._on_query, self._query_failed),
            callback_group=self._service_group,
        )
        self._diag_publisher = self.create_publisher(
            diagnostics.DiagnosticArray, "/diagnostics", OUTPUT_QOS, qos_overriding_options=_overridable()
        )
        self._diag_timer = self.create_timer(
            params.diagnostics_period_s,
            self._guard.wrap("diagnostics", self._publish_diagnostics),
            callback_group=self._diag_group,
        )
        self.get_logger().info(
            f"configured: model {pipeline.name} on {engine.provider} in "
            f"{time.perf_counter() - started:.1f} s, {len(engine.queries)} queries"
        )
        return _SUCCESS

    @_guarded_transition
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        params = self._params
        tolerance_ns = int(round(params.sync_tolerance_s * 1e9))
        self._sync = StampSync(tolerance_ns, params.sync_queue_size, params.sync_queue_size)
        # image_transport naming: remapping `image` moves the base topic, the transport's topic follows.
        if params.image_transport == "compressed":
            image_type = CompressedImage
            image_topic = self.resolve_topic_name(IMAGE_TOPIC) + COMPRESSED_SUFFIX
        else:
            image_type, image_topic = Image, IMAGE_TOPIC
        inputs = (
            (IMAGE, image_type, image_topic, self._on_image),
            (DETECTIONS, Detection2DArray, DETECTIONS_TOPIC, self._on_detections),
        )
        self._subscriptions_io = [
            self.create_subscription(
                msg_type,
                topic,
                self._guard.wrap(side, callback),
                SENSOR_QOS,
                event_callbacks=self._loss_events(side),
                callback_group=self._frame_group,
                qos_overriding_options=_overridable(),
            )
            for side, msg_type, topic, callback in inputs
        ]
        # Same (default) group as the parameter services: query-set changes never interleave.
        self._subscriptions_io.append(
            self.create_subscription(
                String,
                QUERIES_TOPIC,
                self._guard.wrap("queries", self._on_queries_message),
                OUTPUT_QOS,
                qos_overriding_options=_overridable(),
            )
        )
        self._waiters.open()
        if not params.processing_every_frame:
            self._slot = LatestSlot()
            self._worker = threading.Thread(
                target=self._work, args=(self._slot,), name="fgclip-frames", daemon=True
            )
            self._worker.start()
        self._active = True
        self.get_logger().info(
            f"active: {self._subscriptions_io[0].topic_name} ({image_type.__name__}) + "
            f"{self._subscriptions_io[1].topic_name} -> outputs"
        )
        return super().on_activate(state)

    @_guarded_transition
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._destroy_subscriptions()
        self._stop_worker()
        if self._sync is not None:
            self._sync.clear()
        return super().on_deactivate(state)

    @_guarded_transition
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_io()
        self._release_model()
        return _SUCCESS

    @_guarded_transition
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._destroy_subscriptions()
        self._stop_worker()
        self._release_io()
        self._release_model()
        return _SUCCESS

    @_guarded_transition
    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error while {state.label}; releasing everything (back to unconfigured)")
        return self.on_shutdown(state)

    def _loss_events(self, side: str) -> SubscriptionEventCallbacks:
        """Count messages the RMW reports lost before they reached this reader (where it reports them)."""

        def lost(info) -> None:
            self._dds_lost[side] += int(info.total_count_change)

        return SubscriptionEventCallbacks(message_lost=self._guard.wrap(f"{side}_lost", lost))

    def _stop_worker(self) -> None:
        self._waiters.close()
        slot, worker, self._slot, self._worker = self._slot, self._worker, None, None
        if slot is not None and slot.close() is not None:
            self._stale += 1
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=5.0)

    def _destroy_subscriptions(self) -> None:
        for subscription in self._subscriptions_io:
            self.destroy_subscription(subscription)
        self._subscriptions_io = []

    def _release_io(self) -> None:
        for publisher in self._outputs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._outputs = {}
        if self._query_service is not None:
            self.destroy_service(self._query_service)
            self._query_service = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_publisher is not None:
            self.destroy_publisher(self._diag_publisher)
            self._diag_publisher = None

    def _release_model(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()  # drops the model, empties the CUDA cache

    def stop_processing(self) -> None:
        """Stop taking frames: the frame worker ends and waiting Query calls are answered at once."""
        self._active = False
        self._stop_worker()

    def destroy_node(self) -> None:
        core_logger = logging.getLogger("fgclip_ros")
        core_logger.removeHandler(self._log_handler)
        core_logger.propagate = self._core_logger_propagated
        self._active = False
        self._stop_worker()
        self._release_model()
        super().destroy_node()

    # ================================================================== parameters
    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        new = self._params
        for parameter in parameters:
            if attribute(parameter.name) not in NodeParams.__dataclass_fields__:
                continue  # e.g. use_sim_time
            value = parameter.value
            if parameter.name == "queries":
                try:
                    value = validate_queries(list(value or []), new.max_queries, new.max_query_chars)
                except QueryError as exc:
                    return SetParametersResult(successful=False, reason=f"queries rejected: {exc}")
            reason = check_value(parameter.name, value)
            if parameter.name == "model" and not reason:
                reason = _model_problem(value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            new = new.with_value(parameter.name, value)
        engine = self._engine
        if engine is not None and engine.pipeline is not None:
            old = self._params
            try:
                if new.queries != old.queries or new.prompt_template != old.prompt_template:
                    engine.set_queries(new.queries, new.prompt_template or self._manifest_template)
            except Exception as exc:  # noqa: BLE001 - report, keep the previous query set
                return SetParametersResult(successful=False, reason=f"could not encode the queries: {exc}")
            engine.min_score = new.min_score
            engine.max_detections = new.max_detections
            engine.pipeline.context_scale = new.context_scale
        if self._sync is not None:
            self._sync.tolerance_ns = int(round(new.sync_tolerance_s * 1e9))
        self._params = new
        return SetParametersResult(successful=True)

    def _on_queries_message(self, msg: String) -> None:
        params = self._params
        try:
            queries = validate_queries(
                parse_queries_text(msg.data), params.max_queries, params.max_query_chars, allow_empty=False
            )
        except QueryError as exc:
            self._warnings.warn(f"queries_{exc.reason}", f"ignored a message on 'queries': {exc}")
            return
        result = self.set_parameters([Parameter("queries", Parameter.Type.STRING_ARRAY, queries)])[0]
        if not result.successful:
            self._warnings.warn("queries_rejected", f"ignored a message on 'queries': {result.reason}")
        else:
            self.get_logger().info(f"query set from topic: {len(queries)} queries")

    # ================================================================== frames
    def _on_image(self, msg) -> None:
        if self._active and self._sync is not None:
            self._paired(self._sync.add_image(conversions.stamp_ns(msg.header), msg))

    def _on_detections(self, msg: Detection2DArray) -> None:
        if self._active and self._sync is not None:
            self._paired(self._sync.add_detections(conversions.stamp_ns(msg.header), msg))

    def _paired(self, pair) -> None:
        if pair is None:
            return
        slot = self._slot
        if slot is None:  # processing.every_frame: in order, in this callback
            self._process(pair.image, pair.detections)
        elif slot.put(pair) is not None:
            self._stale += 1

    def _work(self, slot: LatestSlot) -> None:
        """The frame worker: the newest pair, one at a time, until the slot is closed."""
        process = self._guard.wrap("frame_worker", self._process)
        while True:
            pair = slot.take(timeout_s=0.5)
            if pair is None:
                if slot.closed:
                    return
                continue
            process(pair.image, pair.detections)

    def _process(self, image_msg, detections_msg: Detection2DArray) -> None:
        engine = self._engine
        if engine is None:
            return
        try:
            image = conversions.image_to_rgb(image_msg, self._params.max_image_pixels)
        except ImageDecodeError as exc:
            self._warnings.warn(f"image_{exc.reason}", f"dropped an image: {exc.detail}")
            return
        boxes = conversions.detections_to_boxes(detections_msg)
        ids = [detection.id for detection in detections_msg.detections]
        try:
            output = engine.process(image, boxes, frame=(image_msg.header, detections_msg), ids=ids)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the node
            self._warnings.warn("processing_error", f"dropped a frame: {type(exc).__name__}: {exc}")
            return
        self._waiters.frame_done()
        if self._stats is not None:
            self._stats.record(output.latency_s)
        for detection in output.detections:
            if not detection.valid:
                self._boxes_rejected += 1
                kind = detection.rejected_reason.split("(")[0].strip().replace(" ", "_") or "rejected"
                self._warnings.warn(f"box_{kind}", f"rejected a box: {detection.rejected_reason}")
        try:
            self._publish(output, image, image_msg.header, detections_msg, engine)
        except Exception as exc:  # noqa: BLE001 - e.g. a publisher destroyed by a concurrent cleanup
            self._warnings.warn("publish_error", f"could not publish a frame's results: {exc}")

    def _publish(self, output, image, image_header, detections_msg, engine) -> None:
        publishers = self._outputs
        if not publishers:
            return
        model = engine.pipeline.name if engine.pipeline is not None else ""
        publishers["fine_grained"].publish(
            conversions.to_fine_grained_detections(output, image_header, detections_msg, model)
        )
        publishers["labeled"].publish(
            conversions.to_labeled(output, detections_msg, self._params.labeled_top_k)
        )
        debug = publishers["debug"]
        # The overlay costs a frame copy and drawing: only while someone listens.
        if debug.get_subscription_count() > 0:
            from fgclip_ros.core.overlay import draw_overlay

            debug.publish(
                conversions.rgb_to_image(draw_overlay(image, output.detections), image_header)
            )

    # ================================================================== Query service
    def _on_query(self, request: Query.Request, response: Query.Response) -> Query.Response:
        response.success = False
        engine, params = self._engine, self._params
        if not self._active or engine is None:
            response.message = f"node is not active (state: {self._state_machine.current_state[1]})"
            return response
        try:
            queries = (
                validate_queries(list(request.queries), params.max_queries, params.max_query_chars)
                if len(request.queries)
                else None
            )
        except QueryError as exc:
            response.message = f"bad query: {exc}"
            return response
        if math.isnan(request.min_score):
            min_score = params.min_score  # NaN: the node's threshold (0.0 is a threshold like any other)
        elif math.isfinite(request.min_score):
            min_score = float(request.min_score)
        else:
            response.message = f"bad min_score: {request.min_score} (NaN = the node's min_score)"
            return response
        if request.wait_for_next_frame:
            requested = float(request.timeout_s)
            timeout = (
                requested if math.isfinite(requested) and requested > 0 else params.query_default_timeout_s
            )
            timeout = min(timeout, MAX_WAIT_S)
            outcome = self._waiters.wait_next(timeout)
            if outcome == BUSY:
                response.message = (
                    f"busy: {MAX_WAITING_QUERIES} calls already wait for the next frame; retry later"
                )
                return response
            if outcome == TIMEOUT:
                response.message = f"timeout: no frame was processed within {timeout:g} s"
                return response
            if outcome == CLOSED:
                response.message = "node stopped while waiting for the next frame"
                return response
        try:
            output = engine.score_latest(queries, min_score)
        except Exception as exc:  # noqa: BLE001 - e.g. the text tower failing on a query
            response.message = f"could not score the queries: {type(exc).__name__}: {exc}"
            return response
        if output is None:
            response.message = "no frame processed yet (waiting for paired image + detections)"
            return response
        image_header, detections_msg = output.frame
        response.success = True
        response.header = image_header
        response.queries = list(output.queries)
        response.detections = conversions.fine_grained_list(output, detections_msg)
        return response

    @staticmethod
    def _query_failed(problem: str) -> Query.Response:
        return Query.Response(success=False, message=f"internal error: {problem}")

    # ================================================================== diagnostics
    def diagnostic_values(self) -> dict:
        engine, params = self._engine, self._params
        stats = self._stats.snapshot() if self._stats is not None else None
        values: dict = {
            "state": self._state_machine.current_state[1],
            "model": engine.pipeline.name if engine is not None and engine.pipeline is not None else "",
            "model_source": self._loaded_model,
            # Set at runtime, loaded at the next configure.
            "model_pending": params.model if params.model != self._loaded_model else "",
            "backend": params.backend,
            "device": self._device_in_use,
            "provider": engine.provider if engine is not None else "",
            "queries": len(engine.queries) if engine is not None else len(params.queries),
            "frames_processed": stats.frames_total if stats else 0,
            "rate_hz": stats.rate_hz if stats else 0.0,
            "latency_p50_ms": stats.latency_p50_ms if stats else float("nan"),
            "latency_p99_ms": stats.latency_p99_ms if stats else float("nan"),
            "frames_in_window": stats.window_frames if stats else 0,
            "boxes_rejected": self._boxes_rejected,
        }
        if self._sync is not None:
            values.update(self._sync.counters.snapshot())
        values["dropped.stale"] = self._stale
        values["dropped.dds_lost"] = sum(self._dds_lost.values())
        values.update({f"dds_lost.{side}": count for side, count in self._dds_lost.items()})
        values["queries_waiting"] = self._waiters.waiting
        problems = self._warnings.counts()
        values["malformed_total"] = sum(
            count for key, count in problems.items() if not key.startswith("box_")
        )
        values.update({f"dropped.{key}": count for key, count in sorted(problems.items())})
        if self._last_error:
            values["last_error"] = self._last_error
        return values

    def _publish_diagnostics(self) -> None:
        if self._diag_publisher is None:
            return
        values = self.diagnostic_values()
        # Unmatched images are normal (a detector slower than the camera); everything else is a problem.
        problems = (
            values["malformed_total"]
            + values.get(f"{DETECTIONS}_unmatched", 0)
            + values.get(f"{IMAGE}_overflow", 0)
            + values.get(f"{DETECTIONS}_overflow", 0)
        )
        new_problems, self._problems_reported = problems - self._problems_reported, problems
        level, message = diagnostics.status_level(self._active, values["frames_in_window"], new_problems)
        status = diagnostics.make_status(
            f"{self.get_name()}: perception", values["provider"] or "none", level, message, values
        )
        self._diag_publisher.publish(diagnostics.make_array(self.get_clock().now().to_msg(), [status]))
