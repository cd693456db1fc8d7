# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""ONNX export of a manifest's encoders with the re-projection folded in, and its verification."""
