# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The prompt rule: a template holds "{}" exactly once, and the query text takes its place.

The node, the evaluators, the trainer, the exporter and the benchmark all build prompts here, so
the same template gives the same text embedding everywhere.
"""

from collections.abc import Iterable

SLOT = "{}"


def check_template(template: str, name: str = "prompt template") -> str:
    """The template itself; ValueError (naming it `name`) unless it is a string holding "{}" once."""
    if not isinstance(template, str) or template.count(SLOT) != 1:
        raise ValueError(f"{name} must contain '{{}}' exactly once, got {template!r}")
    return template


def prompt(template: str, text: str) -> str:
    # str.replace, not str.format: queries may contain braces.
    return check_template(template).replace(SLOT, text, 1)


def prompts(template: str, texts: Iterable[str]) -> list[str]:
    check_template(template)
    return [template.replace(SLOT, text, 1) for text in texts]
