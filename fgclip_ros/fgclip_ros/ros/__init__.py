# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Thin rclpy adapters around the ROS-free core: the perception node, its bringup and its Query client."""
