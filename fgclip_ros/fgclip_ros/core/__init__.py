# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""ROS-free core: encoders, re-projection, crops, matching, manifests, training, evaluation.

Nothing under this package may import rclpy or any ROS message package.
"""
