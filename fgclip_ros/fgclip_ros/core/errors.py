# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Errors a user must act on; each message is one line naming the file or value and the fix."""


class FgclipError(Exception):
    """Base class of the errors fgclip_ros reports to users."""


class ModelFileError(FgclipError):
    """A model file is missing, corrupt or unreachable."""


class ManifestError(FgclipError):
    """A model manifest is malformed or names something that does not exist."""
