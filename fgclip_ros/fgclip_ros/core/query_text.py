# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Query sets from text (the node's ``queries`` topic) and their validation.

A queries message is either a JSON array of strings (``["a red mug", "a blue mug"]``) or plain
text with one query per line. Text that starts like JSON (``[`` or ``{``) must be an array of
strings; anything else (an object, numbers, nesting) is refused rather than taken as a query.
Queries are stripped; blank lines are skipped; duplicates are kept (their order defines the score
columns, and a caller may rely on it).
"""

from __future__ import annotations

import json

DEFAULT_MAX_QUERIES = 4096
DEFAULT_MAX_QUERY_CHARS = 1000


class QueryError(ValueError):
    """A query set that cannot be used; ``reason`` is a short counter key, the message says what to fix."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def parse_queries_text(text: str) -> list[str]:
    """JSON array of strings, or one query per line -> list of queries (unvalidated)."""
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise QueryError("bad_json", f"queries look like JSON but do not parse: {exc.msg}") from None
        except RecursionError:
            # json recurses once per nesting level; an array of strings has one level.
            raise QueryError(
                "bad_json", "queries JSON is nested too deeply (expected an array of strings)"
            ) from None
        if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
            raise QueryError("bad_json", "a JSON queries message must be an array of strings")
        return [item.strip() for item in data]
    return [line.strip() for line in stripped.splitlines() if line.strip()]


def validate_queries(
    queries,
    max_queries: int = DEFAULT_MAX_QUERIES,
    max_chars: int = DEFAULT_MAX_QUERY_CHARS,
    allow_empty: bool = True,
) -> list[str]:
    """Return the queries as a list of stripped strings, or raise :class:`QueryError` naming the bad one."""
    if isinstance(queries, str) or not hasattr(queries, "__iter__"):
        raise QueryError("bad_type", f"queries must be a list of strings, got {type(queries).__name__}")
    cleaned: list[str] = []
    for index, query in enumerate(queries):
        if not isinstance(query, str):
            raise QueryError("bad_type", f"query {index} is a {type(query).__name__}, not a string")
        query = query.strip()
        if not query:
            raise QueryError("empty_query", f"query {index} is empty")
        if len(query) > max_chars:
            raise QueryError(
                "query_too_long",
                f"query {index} has {len(query)} characters (at most {max_chars}: CLIP reads ~77 tokens)",
            )
        if "\x00" in query:
            raise QueryError("bad_character", f"query {index} contains a NUL character")
        cleaned.append(query)
    if len(cleaned) > max_queries:
        raise QueryError(
            "too_many_queries", f"{len(cleaned)} queries given, at most {max_queries} (max_queries)"
        )
    if not cleaned and not allow_empty:
        raise QueryError("no_queries", "the query set is empty")
    return cleaned
