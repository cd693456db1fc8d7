# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Write rosbag2 bags (sqlite3 or mcap) with rosbags and the project's typestore.

Bags are written in rosbag2 format version 9 with message definitions stored, so `ros2 bag`,
Foxglove, and rosbags itself read them without fgclip_ros installed.
"""

from pathlib import Path

from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from rosbags.typesys.store import Typestore

from fgclip_ros.bags.typestore import project_typestore
from fgclip_ros.core.errors import FgclipError

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}


class BagWriteError(FgclipError):
    """The output bag cannot be written (exists, bad storage name)."""


class BagWriter:
    """Context manager: `add_topic` then `write` messages with nanosecond log times.

    compress=True uses zstd: mcap chunk compression (read by every mcap reader), or per-message
    compression for sqlite3 (recorded in metadata.yaml; ros2 bag and rosbags handle it).
    """

    def __init__(
        self,
        path: str | Path,
        storage: str = "mcap",
        typestore: Typestore | None = None,
        compress: bool = False,
    ):
        if storage not in STORAGES:
            raise BagWriteError(f"unknown bag storage {storage!r}; use one of {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise BagWriteError(f"{self.path} exists already; remove it or choose another output path")
        self.storage = storage
        self.typestore = typestore or project_typestore()
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
        if compress:
            mode = CompressionMode.STORAGE if storage == "mcap" else CompressionMode.MESSAGE
            self._writer.set_compression(mode, CompressionFormat.ZSTD)
        self._topics: dict[str, Connection] = {}

    def __enter__(self) -> "BagWriter":
        self._writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()

    def add_topic(self, topic: str, msgtype: str, typestore: Typestore | None = None) -> None:
        """Register `topic`; `typestore` overrides the writer's (a source bag's, to copy raw messages)."""
        self._topics[topic] = self._writer.add_connection(
            topic, msgtype, typestore=typestore or self.typestore
        )

    def write(self, topic: str, msg: object, log_time_ns: int) -> None:
        connection = self._topics[topic]
        self._writer.write(connection, log_time_ns, self.typestore.serialize_cdr(msg, connection.msgtype))

    def write_raw(self, topic: str, data: bytes, log_time_ns: int) -> None:
        self._writer.write(self._topics[topic], log_time_ns, data)
