# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Replay a rosbag2 (sqlite3 or mcap, read with rosbags) into a live ROS graph at its recorded pace.

The pip world has no `ros2 bag play` (rosbag2_py is not on PyPI). Like it, `BagPlayer` publishes
each message's stored CDR bytes unchanged (`Publisher.publish(bytes)`), on the bag's topic with an
rclpy publisher of the bag's type, at `rate` times the recorded pace (log times). The message
types must be importable here (`sensor_msgs`, `vision_msgs`, `fgclip_msgs`, ... installed) and the
bag's definitions must be the installed ones: raw bytes are not converted between versions.
"""

from __future__ import annotations

import importlib
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from fgclip_ros.bags.reader import BagReader
from fgclip_ros.core.errors import FgclipError

# Reliable writers reach reliable and best-effort readers alike; the depth covers a short stall.
DEFAULT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)


class BagPlayError(FgclipError):
    """The bag cannot be replayed (a type that is not importable, a bad rate, no subscriber in time)."""


def message_class(msgtype: str):
    """The rclpy message class of 'pkg/msg/Name' (BagPlayError naming the package to install)."""
    package, kind, name = (msgtype.split("/") + ["", ""])[:3]
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise BagPlayError(
            f"message type {msgtype} is not importable here ({err}); install its interface package "
            f"({package}) in this Python environment"
        ) from err


@dataclass
class PlayStats:
    published: Counter = field(default_factory=Counter)  # topic -> messages
    wall_s: float = 0.0
    bag_s: float = 0.0  # log-time span of the played messages
    max_late_s: float = 0.0  # how far behind its due time the latest publish was


class BagPlayer:
    """Publishers for a bag's topics; `play()` replays the messages in log-time order.

    >>> with BagPlayer(node, "sample_bag") as player:
    ...     player.wait_for_subscribers(["/camera/image_raw"], timeout_s=30)
    ...     stats = player.play()
    """

    def __init__(
        self,
        node,
        bag_path: str | Path,
        topics: Iterable[str] | None = None,
        rate: float = 1.0,
        qos: QoSProfile = DEFAULT_QOS,
        remap: dict[str, str] | None = None,
    ):
        if not rate > 0:
            raise BagPlayError(f"playback rate {rate}: must be > 0 (1 = the recorded pace)")
        self.rate = float(rate)
        self._node = node
        self._reader = BagReader(bag_path).open()
        try:
            present = self._reader.topics
            self.topics = list(topics) if topics is not None else list(present)
            remap = remap or {}
            self.publishers = {}
            for topic in self.topics:
                msgtype = self._reader.topic_type(topic)  # BagTopicError naming the topics present
                self.publishers[topic] = node.create_publisher(
                    message_class(msgtype), remap.get(topic, topic), qos
                )
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> BagPlayer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, flush_timeout_s: float = 2.0) -> None:
        """Destroy the publishers once subscribers acknowledged what was sent (or flush_timeout_s passed).

        Without the wait the last reliable messages are dropped with the publisher.
        """
        from rclpy.duration import Duration

        for publisher in getattr(self, "publishers", {}).values():
            publisher.wait_for_all_acked(Duration(seconds=flush_timeout_s))
            self._node.destroy_publisher(publisher)
        self.publishers = {}
        self._reader.close()

    def wait_for_subscribers(self, topics: Iterable[str], timeout_s: float, count: int = 1) -> None:
        """Block until every named topic has `count` subscribers (what is published before is lost)."""
        deadline = time.monotonic() + timeout_s
        for topic in topics:
            publisher = self.publishers[topic]
            while publisher.get_subscription_count() < count:
                if time.monotonic() > deadline:
                    raise BagPlayError(
                        f"no subscriber on {publisher.topic_name} after {timeout_s:g} s "
                        "(is the node running, active, in the same ROS_DOMAIN_ID?)"
                    )
                time.sleep(0.05)

    def play(
        self,
        on_published: Callable[[str, int], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> PlayStats:
        """Publish every message at start + (log time - first log time) / rate; returns what was sent.

        `on_published(topic, log_time_ns)` is called after each publish.
        """
        stats = PlayStats()
        start = time.monotonic()
        first_ns = last_ns = None
        for message in self._reader.messages(self.topics, raw_only=True):
            if first_ns is None:
                first_ns = message.log_time_ns
            last_ns = message.log_time_ns
            due = start + (message.log_time_ns - first_ns) / 1e9 / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                sleep(delay)
            else:
                stats.max_late_s = max(stats.max_late_s, -delay)
            self.publishers[message.topic].publish(message.raw)
            stats.published[message.topic] += 1
            if on_published is not None:
                on_published(message.topic, message.log_time_ns)
        stats.wall_s = time.monotonic() - start
        stats.bag_s = (last_ns - first_ns) / 1e9 if first_ns is not None else 0.0
        return stats
