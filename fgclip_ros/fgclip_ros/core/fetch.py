# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Resolve a model file spec (local path, or URL + sha256) to a verified local file.

Downloads land in ``cache_dir()/<sha256[:16]>/<file name>``: written to a temporary file in the
same folder, checked against the sha256, then renamed, so an interrupted or corrupt download is
never used. A file already in the cache is verified too. ``FGCLIP_ROS_OFFLINE=1`` forbids downloads.
"""

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fgclip_ros.core.errors import ManifestError, ModelFileError
from fgclip_ros.core.paths import cache_dir

LOG = logging.getLogger("fgclip_ros.fetch")
OFFLINE_ENV = "FGCLIP_ROS_OFFLINE"
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class FileSpec:
    """Where a model file comes from: a local ``path`` or a ``url`` (then ``sha256`` is required)."""

    path: str | None = None
    url: str | None = None
    sha256: str | None = None

    def describe(self) -> str:
        return self.path if self.path is not None else str(self.url)


def sha256_of(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def cached_path(spec: FileSpec) -> Path:
    """The cache location of a URL spec (whether or not it is there yet)."""
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(spec.url).path)).name or "download"
    return cache_dir() / spec.sha256[:16] / name


def _open_url(url: str):
    """Return a response object (``read``, ``headers``); tests replace this to stay off the network."""
    return urllib.request.urlopen(url, timeout=_TIMEOUT_S)  # noqa: S310 - manifest URLs are the user's choice


def _check_sha256(path: Path, expected: str, what: str, fix: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ModelFileError(f"{what}: {path}: sha256 {actual} does not match the expected {expected}; {fix}")


def _download(url: str, target: Path, expected_sha256: str, what: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    manual = f"download it yourself to {target} (sha256 {expected_sha256})"
    LOG.info("downloading %s: %s -> %s", what, url, target)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            try:
                response = _open_url(url)
                length = response.headers.get("Content-Length") if response.headers else None
                with response, tqdm(
                    total=int(length) if length else None, unit="B", unit_scale=True,
                    desc=target.name, disable=None, leave=False,
                ) as bar:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise ModelFileError(f"{what}: could not download {url} ({reason}); {manual}") from None
        actual = digest.hexdigest()
        if actual != expected_sha256:
            raise ModelFileError(
                f"{what}: {url}: downloaded file has sha256 {actual}, expected {expected_sha256}; "
                f"the file changed upstream or the download is corrupt; {manual}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def resolve_file(spec: FileSpec, base_dir: Path, what: str, allow_download: bool = True) -> Path:
    """Return a local, verified path for ``spec``; ModelFileError names the file and how to provide it.

    ``what`` names the file for messages (e.g. "re-projection heads of openai-vit-b-16").
    Local paths are relative to ``base_dir`` (the manifest's folder).
    """
    if (spec.path is None) == (spec.url is None):
        raise ManifestError(f"{what}: give exactly one of 'path' or 'url' (got {spec})")
    expected = spec.sha256.lower() if spec.sha256 else None
    if spec.path is not None:
        path = Path(base_dir) / Path(spec.path).expanduser()
        if not path.is_file():
            raise ModelFileError(
                f"{what}: {path}: not found; put the file there or fix 'path' (relative to {base_dir})"
            )
        if expected:
            _check_sha256(path, expected, what, "replace the file or fix 'sha256'")
        return path
    if not expected:
        raise ManifestError(f"{what}: {spec.url}: a URL needs a 'sha256' so the download can be verified")
    target = cached_path(FileSpec(url=spec.url, sha256=expected))
    if target.is_file():
        _check_sha256(target, expected, what, "delete it to download it again, or put the right file there")
        return target
    if not allow_download or offline():
        why = f"{OFFLINE_ENV} is set" if offline() else "downloads are disabled"
        raise ModelFileError(
            f"{what}: {spec.url} is not in the cache and {why}; download it to {target} (sha256 {expected})"
        )
    _download(spec.url, target, expected, what)
    return target
