# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Vocabulary of the synthetic world: categories and the four FG-OVD attribute families.

Every object is an ``ObjectSpec``; its caption names all four attributes in a fixed word order,
so two specs have the same caption exactly when they are equal.
"""

from dataclasses import dataclass, fields, replace

import numpy as np

from fgclip_ros.evaluation.vocabulary import Vocabulary

CATEGORIES: tuple[str, ...] = ("mug", "bottle", "bowl", "box", "ball", "can", "cup", "vase")

# Saturated, well separated hues plus brown, white and black, so a 64 px crop shows the name unambiguously.
# Eleven names give the Color split FG-OVD's 10 negatives.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 38, 38),
    "orange": (242, 133, 20),
    "yellow": (240, 214, 36),
    "green": (46, 160, 56),
    "teal": (20, 160, 160),
    "blue": (36, 76, 214),
    "purple": (128, 52, 186),
    "pink": (240, 120, 184),
    "brown": (122, 74, 36),
    "white": (236, 236, 230),
    "black": (30, 30, 34),
}

MATERIALS: tuple[str, ...] = ("metal", "wood", "plastic", "glass", "ceramic", "fabric")
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checkered")
TRANSPARENCIES: tuple[str, ...] = ("opaque", "translucent", "transparent")
ATTRIBUTE_FAMILIES: tuple[str, ...] = ("color", "material", "pattern", "transparency")

FAMILY_VALUES: dict[str, tuple[str, ...]] = {
    "color": tuple(COLORS),
    "material": MATERIALS,
    "pattern": PATTERNS,
    "transparency": TRANSPARENCIES,
}


@dataclass(frozen=True)
class ObjectSpec:
    """One object of the world: its category and one value of each attribute family."""

    category: str
    color: str
    material: str
    pattern: str
    transparency: str

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}; expected one of {CATEGORIES}")
        for family in ATTRIBUTE_FAMILIES:
            value = getattr(self, family)
            if value not in FAMILY_VALUES[family]:
                raise ValueError(f"unknown {family} {value!r}; expected one of {FAMILY_VALUES[family]}")

    def caption(self) -> str:
        """Full caption, e.g. "a translucent red striped plastic mug" (every attribute, fixed order)."""
        first = self.transparency
        article = "an" if first[0] in "aeiou" else "a"
        return f"{article} {self.transparency} {self.color} {self.pattern} {self.material} {self.category}"

    def with_attribute(self, family: str, value: str) -> "ObjectSpec":
        """The same object with one attribute family set to ``value``."""
        if family not in ATTRIBUTE_FAMILIES:
            raise ValueError(f"unknown attribute family {family!r}; expected one of {ATTRIBUTE_FAMILIES}")
        return replace(self, **{family: value})

    def attributes(self) -> dict[str, str]:
        return {family: getattr(self, family) for family in ATTRIBUTE_FAMILIES}


def spec_from_caption(caption: str) -> ObjectSpec:
    """Parse a caption written by ``ObjectSpec.caption`` back into its spec."""
    words = caption.split()
    if len(words) != 6:
        raise ValueError(f"not a synthetic-world caption: {caption!r}")
    _, transparency, color, pattern, material, category = words
    return ObjectSpec(category, color, material, pattern, transparency)


def random_spec(rng: np.random.Generator) -> ObjectSpec:
    """A uniformly random object (independent uniform choice per field)."""
    values = {f.name: None for f in fields(ObjectSpec)}
    values["category"] = CATEGORIES[rng.integers(len(CATEGORIES))]
    for family in ATTRIBUTE_FAMILIES:
        options = FAMILY_VALUES[family]
        values[family] = options[rng.integers(len(options))]
    return ObjectSpec(**values)


# What the evaluators judge the synthetic world's ground truth with (they never import this module).
VOCABULARY = Vocabulary(
    CATEGORIES,
    FAMILY_VALUES,
    caption=lambda category, attributes: ObjectSpec(category, **attributes).caption(),
)
