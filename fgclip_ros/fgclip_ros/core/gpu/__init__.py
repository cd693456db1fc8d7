# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The fused GPU path: frame upload, crops, tower, heads and matching captured per batch bucket."""
