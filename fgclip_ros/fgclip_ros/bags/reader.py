# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Read any rosbag2 (sqlite3 or mcap; a bag folder or a bare .db3/.mcap file) with rosbags.

Messages come in log-time order, deserialised with the definitions stored in the bag; types a bag
does not define (older sqlite3 bags store none) fall back to `project_typestore()`. Everything a
user can get wrong with a bag ends in a `BagError` subclass whose one-line message names the bag
and what is missing: the path, a topic (listing the topics present), a message type, or the point
where a truncated file stops.
"""

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.storage_mcap import McapReader
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from fgclip_ros.bags.typestore import project_typestore
from fgclip_ros.core.errors import FgclipError

LOG = logging.getLogger("fgclip_ros.bags")


def _repair_hint(path: Path) -> str:
    """How to salvage what a damaged bag still holds, for the storage it uses."""
    files = [path] if path.is_file() else sorted(path.glob("*.mcap")) + sorted(path.glob("*.db3"))
    hints = []
    if any(f.suffix == ".mcap" for f in files):
        hints.append("`mcap recover IN.mcap -o OUT.mcap` salvages an mcap file")
    if any(f.suffix == ".db3" for f in files):
        hints.append("`sqlite3 IN.db3 .recover | sqlite3 OUT.db3` salvages a sqlite3 file")
    return f"({'; '.join(hints)})" if hints else ""


IDL_SEPARATOR = "=" * 80 + "\n"


class BagError(FgclipError):
    """A bag cannot be used; the message names the bag and what is missing."""


class BagNotFoundError(BagError):
    """The bag path does not exist or holds no storage file."""


class BagCorruptError(BagError):
    """The bag is truncated or corrupt (storage, metadata or a message)."""


class BagTopicError(BagError):
    """A required topic is absent or has an unexpected type."""


class BagTypeError(BagError):
    """A topic's message type has no definition, neither in the bag nor in fgclip_ros."""


@dataclass(frozen=True)
class TopicSummary:
    name: str
    msgtype: str
    count: int


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    msg: object | None  # deserialised (rosbags dataclass); None when read with raw_only=True
    raw: bytes  # the CDR bytes as stored (to copy a message into another bag unchanged)


def _describe_topics(topics: dict[str, TopicSummary]) -> str:
    if not topics:
        return "the bag has no topics"
    return "topics present: " + ", ".join(f"{t.name} [{t.msgtype}]" for t in topics.values())


def _types_from_connection(connection: Connection) -> dict:
    """The Typesdict a connection's stored definition declares ({} when it stores none)."""
    definition = connection.msgdef
    if definition.format == MessageDefinitionFormat.MSG:
        return get_types_from_msg(definition.data, connection.msgtype)
    if definition.format == MessageDefinitionFormat.IDL:
        typs: dict = {}
        if definition.data.startswith(IDL_SEPARATOR + "IDL: "):
            for part in definition.data.split(IDL_SEPARATOR)[1:]:
                typs.update(get_types_from_idl(part.split("\n", 1)[1]))
        else:
            typs.update(get_types_from_idl(definition.data))
        return typs
    return {}


def _storage_file_fallback(path: Path) -> Path:
    """A bag folder without metadata.yaml: its single .mcap/.db3 file can still be read directly."""
    if not path.is_dir() or (path / "metadata.yaml").is_file():
        return path
    files = sorted(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    if len(files) == 1:
        LOG.warning("%s has no metadata.yaml; reading its storage file %s directly", path, files[0].name)
        return files[0]
    if not files:
        raise BagNotFoundError(f"{path} is not a rosbag2: no metadata.yaml and no .mcap/.db3 file in it")
    raise BagCorruptError(
        f"{path} has no metadata.yaml and {len(files)} storage files; pass one of the files, "
        f"or rebuild metadata.yaml with `ros2 bag reindex {path}`"
    )


class BagReader:
    """Context manager over one rosbag2.

    >>> with BagReader("bag_dir") as bag:
    ...     for m in bag.messages(["/camera/image_raw"]):
    ...         print(m.log_time_ns, m.msg.header.stamp)
    """

    def __init__(self, path: str | Path, default_typestore: Typestore | None = None):
        self.path = Path(path)
        self._default_typestore = default_typestore
        self._reader: Reader | None = None
        self.typestore: Typestore | None = None
        self._connections: dict[str, list[Connection]] = {}
        self._undefined_types: set[str] = set()

    # --- opening -------------------------------------------------------------------------------
    def open(self) -> "BagReader":
        if not self.path.exists():
            raise BagNotFoundError(f"bag {self.path} does not exist")
        storage_path = _storage_file_fallback(self.path)
        try:
            reader = Reader(storage_path)
            reader.open()
        except FileNotFoundError as err:
            raise BagNotFoundError(f"bag {self.path}: {err}") from err
        except KeyError as err:
            if err.args != ("unknown",):
                raise
            # rosbag2 stores encoding 'unknown' for types it found no definition of; rosbags cannot open that.
            raise BagTypeError(
                f"bag {self.path} stores some message types without definition (encoding 'unknown'), which "
                f"rosbags cannot read; record it again with the message packages installed, or as mcap"
            ) from err
        except Exception as err:  # noqa: BLE001 - rosbags/sqlite3/struct errors all mean "unreadable file"
            raise BagCorruptError(
                f"cannot open bag {self.path}: {err} - the file is truncated or corrupt "
                f"{_repair_hint(self.path)}"
            ) from err
        self._reader = reader
        self._connections = {}
        for connection in reader.connections:
            self._connections.setdefault(connection.topic, []).append(connection)
        try:
            self.typestore = self._build_typestore(reader.connections)
        except BaseException:
            self.close()
            raise
        return self

    def _build_typestore(self, connections: list[Connection]) -> Typestore:
        # The bag's own definitions win: its data was serialised with them (e.g. an older vision_msgs).
        store = get_typestore(Stores.EMPTY)
        bag_typs: dict = {}
        for connection in connections:
            try:
                bag_typs.update(_types_from_connection(connection))
            except Exception as err:  # noqa: BLE001 - malformed stored definition: use the defaults instead
                LOG.warning(
                    "bag %s: cannot parse the stored definition of %s (%s); using fgclip_ros's",
                    self.path,
                    connection.msgtype,
                    err,
                )
        if bag_typs:
            try:
                store.register(bag_typs)
            except Exception as err:  # noqa: BLE001 - TypesysError: definitions that contradict each other
                raise BagTypeError(
                    f"bag {self.path}: its stored message definitions do not fit together: {err}"
                ) from err
        default = self._default_typestore or project_typestore()
        store.register({name: d for name, d in default.fielddefs.items() if name not in store.fielddefs})
        self._undefined_types = {c.msgtype for c in connections if c.msgtype not in store.fielddefs}
        return store

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> "BagReader":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- what the bag holds --------------------------------------------------------------------
    def _require_open(self) -> Reader:
        if self._reader is None:
            raise RuntimeError("BagReader is not open; use it as a context manager")
        return self._reader

    @property
    def storage(self) -> str:
        """'mcap' or 'sqlite3'."""
        storage = self._require_open().storage
        inner = getattr(storage, "storages", None)  # a bag folder wraps one reader per storage file
        if inner:
            storage = inner[0]
        return "mcap" if isinstance(storage, McapReader) else "sqlite3"

    @property
    def start_ns(self) -> int:
        return self._require_open().start_time

    @property
    def end_ns(self) -> int:
        return self._require_open().end_time

    @property
    def message_count(self) -> int:
        return self._require_open().message_count

    @property
    def topics(self) -> dict[str, TopicSummary]:
        self._require_open()
        summaries = {}
        for topic, connections in sorted(self._connections.items()):
            msgtypes = sorted({c.msgtype for c in connections})
            summaries[topic] = TopicSummary(topic, "|".join(msgtypes), sum(c.msgcount for c in connections))
        return summaries

    def topics_of_type(self, *msgtypes: str) -> list[str]:
        return [t.name for t in self.topics.values() if t.msgtype in msgtypes]

    def topic_type(self, topic: str, allowed_types: Iterable[str] | None = None, role: str = "topic") -> str:
        """The topic's message type; BagTopicError when it is absent or not one of `allowed_types`."""
        topics = self.topics
        if topic not in topics:
            raise BagTopicError(f"{role} {topic} is not in bag {self.path}; {_describe_topics(topics)}")
        msgtype = topics[topic].msgtype
        allowed = list(allowed_types or [])
        if allowed and msgtype not in allowed:
            raise BagTopicError(
                f"{role} {topic} in bag {self.path} has type {msgtype}, expected {' or '.join(allowed)}"
            )
        self._check_type_known(topic, msgtype)
        return msgtype

    def _check_type_known(self, topic: str, msgtype: str) -> None:
        store = self.typestore
        assert store is not None
        if msgtype in self._undefined_types:
            raise BagTypeError(
                f"topic {topic} in bag {self.path} has type {msgtype}, which the bag does not define and "
                f"fgclip_ros does not know (built-in ROS 2 types, vision_msgs, fgclip_msgs); "
                f"record the bag with message definitions (rosbag2 >= Iron, or mcap)"
            )
        try:
            store.get_msgdef(msgtype)  # resolves nested types: a missing one fails here, not mid-bag
        except Exception as err:  # noqa: BLE001 - rosbags raises KeyError/TypesysError for missing types
            raise BagTypeError(
                f"topic {topic} in bag {self.path}: type {msgtype} refers to an undefined type ({err})"
            ) from err

    # --- messages ------------------------------------------------------------------------------
    def messages(self, topics: Iterable[str], raw_only: bool = False) -> Iterator[BagMessage]:
        """Messages of `topics` in log-time order (each topic checked first: present, type known)."""
        reader = self._require_open()
        topics = list(dict.fromkeys(topics))
        for topic in topics:
            self.topic_type(topic)
        connections = [c for t in topics for c in self._connections[t]]
        store = self.typestore
        assert store is not None
        count, last_ns = 0, None
        iterator = reader.messages(connections=connections)
        while True:
            try:
                connection, log_time_ns, data = next(iterator)
            except StopIteration:
                return
            except Exception as err:  # noqa: BLE001 - storage errors mid-file mean truncation/corruption
                where = (
                    f"after {count} messages (last at t={last_ns} ns)"
                    if count
                    else "before the first message"
                )
                raise BagCorruptError(
                    f"bag {self.path} is truncated or corrupt: reading stopped {where}: {err} "
                    f"{_repair_hint(self.path)}"
                ) from err
            count, last_ns = count + 1, log_time_ns
            if raw_only:
                yield BagMessage(connection.topic, connection.msgtype, log_time_ns, None, bytes(data))
                continue
            try:
                msg = store.deserialize_cdr(data, connection.msgtype)
            except Exception as err:  # noqa: BLE001 - bad bytes or a definition that does not fit them
                raise BagCorruptError(
                    f"bag {self.path}: message {count} on {connection.topic} (t={log_time_ns} ns) does not "
                    f"deserialise as {connection.msgtype}: {err}"
                ) from err
            yield BagMessage(connection.topic, connection.msgtype, log_time_ns, msg, bytes(data))
