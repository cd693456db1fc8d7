# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Query text from the `queries` topic: whatever a sender publishes gives a query list or a QueryError."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fgclip_ros.core.query_text import QueryError, parse_queries_text


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_a_counted_error_not_a_crash(depth):
    # json.loads recurses once per '[': deep nesting raised RecursionError, which escaped the node.
    with pytest.raises(QueryError) as info:
        parse_queries_text("[" * depth)
    assert info.value.reason == "bad_json"
    with pytest.raises(QueryError):
        parse_queries_text("[" * depth + "]" * depth)


@pytest.mark.parametrize("text", ['{"a red mug": 1}', '  {"queries": ["a red mug"]}', "{}"])
def test_a_json_object_is_refused_not_taken_as_one_query(text):
    with pytest.raises(QueryError) as info:
        parse_queries_text(text)
    assert info.value.reason == "bad_json" and "array of strings" in str(info.value)


@pytest.mark.parametrize("text", ["[1, 2]", '["a", ["b"]]', '["a", null]', "[true]"])
def test_json_must_be_an_array_of_strings(text):
    with pytest.raises(QueryError) as info:
        parse_queries_text(text)
    assert info.value.reason == "bad_json"


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), json_values.map(json.dumps), st.text(alphabet='[]{}",\\ \n')))
def test_any_text_gives_queries_or_a_query_error(text):
    try:
        queries = parse_queries_text(text)
    except QueryError as exc:
        assert exc.reason and str(exc)
        return
    assert all(isinstance(query, str) for query in queries)
