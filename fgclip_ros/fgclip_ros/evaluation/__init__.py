# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Evaluators: FG-OVD-format ranking benchmarks (``fgovd``, ``ranks``, ``plots``).

Submodules are imported explicitly; this package imports nothing so ``ranks`` stays torch-free.
"""
