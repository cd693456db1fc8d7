# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The project's offline test world: procedural scenes with fine-grained attributes.

No real CLIP weights or FG-OVD images are needed to measure what the paper measures: objects
of a few categories with a colour, material, pattern and transparency, rendered with NumPy and
OpenCV, deterministic from a seed (``render``), described by full captions (``vocab``), and
written as FG-OVD-format benchmark sets (``benchmark``). The real-model paths never import it.
"""
