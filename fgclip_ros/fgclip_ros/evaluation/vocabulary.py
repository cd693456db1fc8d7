# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The vocabulary an evaluator judges with: categories, attribute families and the caption rule.

Evaluators never import a particular world; the caller (a CLI, the demo, the synthetic world)
passes a `Vocabulary`. With one, an object's ground-truth category and attributes become hard
negatives (its caption with one attribute changed), partial queries ("red mug") can be judged,
and captions can be parsed back to their category. Without one (None), only exact captions count.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

ARTICLES = frozenset({"a", "an", "the"})


@dataclass(frozen=True)
class Vocabulary:
    categories: tuple[str, ...]
    family_values: Mapping[str, tuple[str, ...]]  # attribute family -> its values, in family order
    caption: Callable[[str, Mapping[str, str]], str]  # (category, attributes) -> the object's caption

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.family_values)

    def terms(self) -> dict[str, str]:
        """Word -> "category" or the attribute family it is a value of."""
        terms = {c: "category" for c in self.categories}
        for family, values in self.family_values.items():
            terms.update({v: family for v in values})
        return terms

    def describes(self, category: str | None, attributes: Mapping[str, str]) -> bool:
        """True when the category and one value of every family are this vocabulary's."""
        return category in self.categories and all(
            attributes.get(f) in values for f, values in self.family_values.items()
        )

    def parse(self, caption: str) -> tuple[str, dict[str, str]] | None:
        """(category, attributes) of a caption this vocabulary writes, else None."""
        terms = self.terms()
        fields: dict[str, str] = {}
        for word in caption.split():
            family = terms.get(word)
            if family is None:
                if word in ARTICLES:
                    continue
                return None
            if family in fields:
                return None
            fields[family] = word
        category = fields.pop("category", None)
        if not self.describes(category, fields) or self.caption(category, fields) != caption:
            return None
        return category, fields

    def hard_negatives(self, category: str, attributes: Mapping[str, str]) -> list[tuple[str, str, str]]:
        """(caption, family, value) for every other value of every family, in family order."""
        return [
            (self.caption(category, {**attributes, family: value}), family, value)
            for family, values in self.family_values.items()
            for value in values
            if value != attributes[family]
        ]
