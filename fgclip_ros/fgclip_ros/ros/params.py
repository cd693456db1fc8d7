# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node's parameters: one table (name, default, description, when it applies), declared with descriptors.

config/perception.yaml documents the same parameters for users; docs/node.md lists them. When a
parameter is added here, add it there too (test_node_graph checks that the YAML names only
declared parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

from fgclip_ros.core.image_codec import DEFAULT_MAX_IMAGE_PIXELS
from fgclip_ros.core.prompts import check_template
from fgclip_ros.core.query_text import DEFAULT_MAX_QUERIES, DEFAULT_MAX_QUERY_CHARS
from fgclip_ros.export.deploy import BACKENDS, DEFAULT_INTRA_OP_THREADS, QUANTIZE_MODES

# When a change takes effect: immediately, at the next activate, at the next configure, or at start only.
RUNTIME, ACTIVATE, CONFIGURE, START = "runtime", "activate", "configure", "start"

IMAGE_TRANSPORTS = ("raw", "compressed")
DTYPES = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class Spec:
    name: str
    default: object
    description: str
    applies: str
    choices: tuple[str, ...] = ()
    range: tuple[float, float] | None = None


SPECS: tuple[Spec, ...] = (
    Spec(
        "model",
        "openai-vit-b-16",
        "Model manifest: a name from the package's models/ folder or a path to a manifest .yaml.",
        CONFIGURE,
    ),
    Spec(
        "backend",
        "auto",
        "Inference backend. auto: ONNX Runtime on the CPU; on CUDA ONNX Runtime's TensorRT provider "
        "(fp16 engines) where it is available, else the PyTorch CUDA-graph path. Graphs the manifest "
        "does not name are exported once into the user cache (first configure) and reused.",
        CONFIGURE,
        BACKENDS,
    ),
    Spec(
        "quantize",
        "auto",
        "Image graph precision on ONNX Runtime's CPU provider. auto: int8 when it passes the accuracy "
        "gate for the model and measured faster than fp32 at export, else fp32; int8: require it "
        "(configure fails when the gate refuses it); none: fp32.",
        CONFIGURE,
        QUANTIZE_MODES,
    ),
    Spec(
        "intra_op_threads",
        DEFAULT_INTRA_OP_THREADS,
        "ONNX Runtime threads per session (0 = its default, one per core); 1 measured fastest on a "
        "2-core machine, whose other core serves ROS and the crops.",
        CONFIGURE,
        range=(0, 1024),
    ),
    Spec(
        "device", "auto", "Torch device (cpu, cuda, cuda:1); auto = cuda when available, else cpu.", CONFIGURE
    ),
    Spec(
        "dtype",
        "fp32",
        "Weights/activations precision of the towers (fp16/bf16 need CUDA).",
        CONFIGURE,
        DTYPES,
    ),
    Spec(
        "image_size",
        [0, 0],
        "Expected camera image [width, height]. On CUDA with the torch backend the GPU path is "
        "prepared for it at configure (its CUDA graphs captured), so the first frame is not slow; "
        "[0, 0] = prepare on the first frame. Other sizes still work: each is prepared when it "
        "first arrives, with a warning.",
        CONFIGURE,
    ),
    Spec(
        "queries",
        [],
        "The query set (free text, one entry per query). Changeable at runtime; the text "
        "embeddings are recomputed once per change. The 'queries' topic sets this parameter too.",
        RUNTIME,
    ),
    Spec(
        "prompt_template",
        "",
        "Prompt wrapped around each query, '{}' marks the query (e.g. 'a photo of {}'); "
        "empty = the model manifest's template.",
        RUNTIME,
    ),
    Spec(
        "min_score",
        0.0,
        "A detection's best query counts as a match only when its cosine score reaches this "
        "value (else best_index = -1); also the threshold for detections_labeled results.",
        RUNTIME,
        range=(-1.0, 1.0),
    ),
    Spec(
        "context_scale",
        1.0,
        "Crop = box scaled about its centre by this factor (1.0 = the plain box, as in the paper).",
        RUNTIME,
        range=(0.1, 4.0),
    ),
    Spec(
        "max_detections",
        100,
        "At most this many boxes per frame are scored (in input order); the rest are "
        "reported as rejected. 0 = no limit.",
        RUNTIME,
        range=(0, 100000),
    ),
    Spec(
        "labeled_top_k",
        5,
        "detections_labeled: at most this many results per detection (0 = every query reaching min_score).",
        RUNTIME,
        range=(0, 100000),
    ),
    Spec("max_queries", DEFAULT_MAX_QUERIES, "Largest accepted query set.", RUNTIME, range=(1, 1000000)),
    Spec(
        "max_query_chars",
        DEFAULT_MAX_QUERY_CHARS,
        "Longest accepted query, in characters.",
        RUNTIME,
        range=(1, 1000000),
    ),
    Spec(
        "image_transport",
        "raw",
        "Input transport (image_transport naming): raw = sensor_msgs/Image on 'image', compressed = "
        "sensor_msgs/CompressedImage (jpeg/png) on '<image>/compressed'.",
        ACTIVATE,
        IMAGE_TRANSPORTS,
    ),
    Spec(
        "max_image_pixels",
        DEFAULT_MAX_IMAGE_PIXELS,
        "Images with more pixels (width x height; for JPEG/PNG the size their header declares, "
        "checked before decoding) are dropped and counted as image_too_large. Default: 8K UHD.",
        RUNTIME,
        range=(1, 2**31 - 1),
    ),
    Spec(
        "processing.every_frame",
        False,
        "false: keep-latest; one worker processes the newest paired frame and older unprocessed "
        "pairs are dropped (counted as dropped.stale), so latency stays near one processing time "
        "under overload. true: every pair is processed in order (bags, offline evaluation with "
        "reliable QoS); a slow node then falls behind its inputs.",
        ACTIVATE,
    ),
    Spec(
        "sync.tolerance_s",
        0.0,
        "Pair image and detections whose header stamps differ by at most this many "
        "seconds (0 = exact stamps).",
        RUNTIME,
        range=(0.0, 10.0),
    ),
    Spec(
        "sync.queue_size",
        10,
        "Messages buffered per input while waiting for a partner (oldest dropped).",
        ACTIVATE,
        range=(1, 1000),
    ),
    Spec(
        "query.default_timeout_s",
        2.0,
        "Query service: wait this long for the next frame when the request's timeout_s is 0 "
        "(any wait is capped at 10 s).",
        RUNTIME,
        range=(0.0, 10.0),
    ),
    Spec("diagnostics_period_s", 1.0, "Period of the /diagnostics status.", CONFIGURE, range=(0.05, 60.0)),
    Spec(
        "stats_window_s",
        10.0,
        "Window of the rate and latency percentiles in /diagnostics.",
        CONFIGURE,
        range=(0.5, 3600.0),
    ),
    Spec(
        "warn_period_s",
        5.0,
        "Malformed inputs are counted; at most one warning per kind per period is logged.",
        CONFIGURE,
        range=(0.0, 3600.0),
    ),
    Spec(
        "autostart",
        True,
        "Configure and activate right after start (false: wait for lifecycle transitions, "
        "e.g. `ros2 lifecycle set`).",
        START,
    ),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


@dataclass
class NodeParams:
    """A typed snapshot of the parameters (names with dots become underscores)."""

    model: str
    backend: str
    quantize: str
    intra_op_threads: int
    device: str
    dtype: str
    image_size: list[int]
    queries: list[str]
    prompt_template: str
    min_score: float
    context_scale: float
    max_detections: int
    labeled_top_k: int
    max_queries: int
    max_query_chars: int
    image_transport: str
    max_image_pixels: int
    processing_every_frame: bool
    sync_tolerance_s: float
    sync_queue_size: int
    query_default_timeout_s: float
    diagnostics_period_s: float
    stats_window_s: float
    warn_period_s: float
    autostart: bool

    def with_value(self, name: str, value) -> NodeParams:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data[attribute(name)] = value
        return NodeParams(**data)


def attribute(name: str) -> str:
    return name.replace(".", "_")


def descriptor_of(spec: Spec) -> ParameterDescriptor:
    """What `ros2 param describe` shows for the parameter: its text, type, range and choices."""
    text = spec.description
    if spec.choices:
        text += f" One of: {', '.join(spec.choices)}."
    text += {
        RUNTIME: " Takes effect immediately.",
        ACTIVATE: " Takes effect at the next activate.",
        CONFIGURE: " Takes effect at the next configure.",
        START: " Read when the node starts.",
    }[spec.applies]
    descriptor = ParameterDescriptor(name=spec.name, description=text)
    if spec.choices:
        descriptor.additional_constraints = f"one of {', '.join(spec.choices)}"
    if isinstance(spec.default, bool):
        descriptor.type = ParameterType.PARAMETER_BOOL
    elif isinstance(spec.default, int):
        descriptor.type = ParameterType.PARAMETER_INTEGER
        if spec.range:
            descriptor.integer_range = [
                IntegerRange(from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=0)
            ]
    elif isinstance(spec.default, float):
        descriptor.type = ParameterType.PARAMETER_DOUBLE
        if spec.range:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(spec.range[0]), to_value=float(spec.range[1]), step=0.0)
            ]
    elif isinstance(spec.default, list) and spec.default and isinstance(spec.default[0], int):
        descriptor.type = ParameterType.PARAMETER_INTEGER_ARRAY
    elif isinstance(spec.default, list):
        descriptor.type = ParameterType.PARAMETER_STRING_ARRAY
    else:
        descriptor.type = ParameterType.PARAMETER_STRING
    return descriptor


def declare_all(node) -> None:
    """Declare every parameter with its descriptor (overrides from --params-file / launch apply)."""
    for spec in SPECS:
        descriptor = descriptor_of(spec)
        if isinstance(spec.default, list) and not spec.default:
            # An empty list has no inferable type in rclpy: declare typed but unset, then set [].
            node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, descriptor)
            try:
                value = node.get_parameter(spec.name).value
            except ParameterUninitializedException:
                value = None
            if value is None:
                node.set_parameters([Parameter(spec.name, Parameter.Type.STRING_ARRAY, list(spec.default))])
        else:
            node.declare_parameter(spec.name, spec.default, descriptor)


def read_all(node) -> NodeParams:
    values = {}
    for spec in SPECS:
        value = node.get_parameter(spec.name).value
        values[attribute(spec.name)] = list(value) if isinstance(spec.default, list) else value
    return NodeParams(**values)


def check_value(name: str, value) -> str | None:
    """None when ``value`` suits parameter ``name``, else the reason (rclpy checks the types)."""
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        return None
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if spec.range and not isinstance(value, bool) and isinstance(value, (int, float)):
        low, high = spec.range
        if not low <= value <= high:
            return f"{name} must be within [{low:g}, {high:g}], got {value!r}"
    if name == "prompt_template" and value:
        try:
            check_template(value, "prompt_template")
        except ValueError as err:
            return f"{err} (or be empty: the manifest's)"
    if name in ("model", "device") and not str(value).strip():
        return f"{name} must not be empty"
    if name == "image_size":
        size = list(value)
        if len(size) != 2 or not all(0 <= int(v) <= 16384 for v in size) or (0 in size and any(size)):
            return f"image_size must be [width, height] in pixels, or [0, 0] for unknown, got {size!r}"
    return None
