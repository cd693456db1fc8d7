# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""rosbag2 input/output without ROS: rosbags-based reader and writer, the project typestore, sample bags.

- typestore.py: ROS 2 Kilted built-ins + vision_msgs + fgclip_msgs (from the repository's .msg files)
- reader.py: BagReader (sqlite3 / mcap, folder or single file) and the BagError family
- writer.py: BagWriter; messages.py: build / take apart the messages fgclip_ros uses
- ground_truth.py: the per-frame ground-truth JSON carried on /fgclip/ground_truth
- sample.py: sample bags of the synthetic world (fgclip-make-sample-bag)
"""
