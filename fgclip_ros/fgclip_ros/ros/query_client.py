# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Calling the perception node's Query service, and turning the answer into plain data (table / JSON)."""

from __future__ import annotations

import math
import time

from fgclip_msgs.srv import Query
from fgclip_ros.core.msg_fields import detection_from_message

DEFAULT_SERVICE = "/fgclip_perception/query"
NODE_MIN_SCORE = math.nan  # Query.min_score meaning "the node's min_score"


class QueryUnavailable(RuntimeError):
    """The service did not appear, or did not answer, in time."""


def call_query(
    node,
    queries: list[str],
    min_score: float = NODE_MIN_SCORE,
    wait_for_next_frame: bool = False,
    timeout_s: float = 0.0,
    service: str = DEFAULT_SERVICE,
    connect_timeout_s: float = 10.0,
    executor=None,
) -> Query.Response:
    """Call the service from ``node`` (spun here, or by ``executor`` when given) and return the response.

    The call itself may last up to ``timeout_s`` (the node waits that long for a frame) plus a margin.
    """
    import rclpy

    client = node.create_client(Query, service)
    try:
        if not client.wait_for_service(timeout_sec=connect_timeout_s):
            raise QueryUnavailable(
                f"service {service} not available after {connect_timeout_s:g} s "
                "(is fgclip-perception running, in the same ROS_DOMAIN_ID?)"
            )
        request = Query.Request(
            queries=list(queries),
            min_score=float(min_score),
            wait_for_next_frame=bool(wait_for_next_frame),
            timeout_s=float(timeout_s),
        )
        future = client.call_async(request)
        # The node waits up to timeout_s (or its default) for a frame; allow a margin for the answer.
        deadline = time.monotonic() + max(timeout_s, 0.0) + connect_timeout_s
        while not future.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                future.cancel()
                raise QueryUnavailable(
                    f"no answer from {service} within {max(timeout_s, 0.0) + connect_timeout_s:g} s"
                )
            if executor is None:
                rclpy.spin_until_future_complete(node, future, timeout_sec=min(remaining, 0.5))
            else:
                time.sleep(min(remaining, 0.02))
        return future.result()
    finally:
        node.destroy_client(client)


def _bbox(bbox) -> dict:
    return {
        "center_x": bbox.center.position.x,
        "center_y": bbox.center.position.y,
        "size_x": bbox.size_x,
        "size_y": bbox.size_y,
    }


def response_to_dict(response: Query.Response) -> dict:
    """A JSON-ready dict of the answer (for --json and for scripts)."""
    return {
        "success": bool(response.success),
        "message": response.message,
        "stamp": {"sec": response.header.stamp.sec, "nanosec": response.header.stamp.nanosec},
        "frame_id": response.header.frame_id,
        "queries": list(response.queries),
        "detections": [
            {
                "id": d.id,
                "bbox": _bbox(d.bbox),
                **detection_from_message(d).summary(),
                "scores": [float(s) for s in d.scores],
            }
            for d in response.detections
        ],
    }
