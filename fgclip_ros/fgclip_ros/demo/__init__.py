# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The main job (`fgclip-demo`): the node, the replayed sample bag, queries and a scored report."""
