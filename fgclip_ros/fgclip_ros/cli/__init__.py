# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Console scripts, one module each (fgclip-match, ...); each defines ``main(argv=None) -> int``."""
