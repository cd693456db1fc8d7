# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""fgclip_ros: fine-grained open-vocabulary object recognition for ROS 2."""

__version__ = "0.1.0"
