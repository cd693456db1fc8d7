# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""``fgclip-perception``: start the perception node with its parameter file (pip-world bringup)."""

import sys

from fgclip_ros.ros.bringup import main

if __name__ == "__main__":
    sys.exit(main())
