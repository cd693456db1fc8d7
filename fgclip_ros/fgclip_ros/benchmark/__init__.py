# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Latency and throughput benchmark of the per-frame path and its components (`fgclip-bench`)."""
