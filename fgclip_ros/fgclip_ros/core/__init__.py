# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""ROS-free engine: what the node runs per frame.

Manifests, encoders, re-projection, prompts, crops, matching, the GPU path, the engine, stamp
pairing, image decoding and queries. The tools (bags, evaluation, synth, training, export,
benchmark) are siblings that use this package; nothing here imports them, rclpy or any ROS message
package (test_import_boundaries.py).
"""
