# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Graph plumbing of the demo: the node as a subprocess, the demo's own rclpy node, a private DDS graph.

- `NodeRunner`: the pip-world bringup (`fgclip-perception`) as a subprocess with its output in a
  log file; stopped with SIGINT (SIGKILL after a timeout), and killed by Linux if the demo dies.
- `DemoClient`: an rclpy node in its own context, spun by a background thread, recording topics
  and calling services with bounded waits.
- `private_graph_env`: this process's environment switched to a private graph
  (`isolated_env`: own ROS_DOMAIN_ID, localhost-only discovery) and restored after.
- `domain_candidates` / `isolated_env`: the one rule for a private graph's domain and environment.

The graph tests (test/graph_harness.py) build on these, so they exercise the demo's own plumbing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from fgclip_ros.ros.dds_profile import use_large_sample_profile

# Domain ids 1..101: 0 is everybody's default, and ids above 101 collide with ephemeral ports on Linux.
MAX_SAFE_DOMAIN_ID = 101


def domain_candidates(pid: int, count: int = 6) -> list[int]:
    """Domain ids to try, in order: 1 + pid % 101 first (the graph tests use it), then spread-out others."""
    first = pid % MAX_SAFE_DOMAIN_ID
    # 37 is coprime with 101, so the sequence visits distinct ids.
    return [1 + (first + 37 * k) % MAX_SAFE_DOMAIN_ID for k in range(count)]


def isolated_env(domain_id: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a process in the demo's private graph: own domain, discovery on this host only."""
    if not 0 <= domain_id <= MAX_SAFE_DOMAIN_ID:
        raise ValueError(f"ROS_DOMAIN_ID {domain_id}: use 0..{MAX_SAFE_DOMAIN_ID}")
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    # Either would widen discovery again (or warn about the mix with the discovery range).
    env.pop("ROS_LOCALHOST_ONLY", None)
    env.pop("ROS_STATIC_PEERS", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    return use_large_sample_profile(env)


# Run before the bringup in the node's process: ask Linux to SIGTERM it when the demo dies (even
# when the demo is SIGKILLed), so no node outlives its demo; then become the bringup (exec).
_NODE_LAUNCHER = """
import ctypes, os, signal, sys
parent = int(sys.argv[1])
try:
    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != parent:
    sys.exit(3)
# -P: never the current directory first on sys.path; in the repository root its fgclip_ros/ folder
# would shadow the installed package as an empty namespace package.
os.execv(sys.executable, [sys.executable, "-P", "-m", "fgclip_ros.cli.perception", *sys.argv[2:]])
"""


# ----------------------------------------------------------------------------- the node process
class NodeRunner:
    """The pip-world bringup (`fgclip-perception`) as a subprocess, output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None):
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-c", _NODE_LAUNCHER, str(os.getpid()), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )

    @property
    def command(self) -> str:
        return " ".join(["fgclip-perception", *self.args])

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def failure_reason(self) -> str:
        """The node's own one-line reason (configure failure), else the last lines of its log."""
        text = self.log_text()
        reasons = re.findall(r"(?:not started|configure failed): (.+)", text)
        if reasons:
            return reasons[-1].strip()
        tail = [line for line in text.strip().splitlines() if line.strip()][-3:]
        return " | ".join(tail) if tail else "no output"

    def stop(self, timeout_s: float = 20.0, sig: int = signal.SIGINT) -> int | None:
        """`sig` (SIGINT: the bringup then releases the model and exits 0), SIGKILL after `timeout_s`."""
        try:
            if self.alive():
                self.process.send_signal(sig)
                try:
                    self.process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
        except KeyboardInterrupt:  # a second Ctrl-C while stopping: do not wait any longer
            self.process.kill()
            self.process.wait(timeout=10)
            raise
        finally:
            self._log.close()
        return self.process.returncode


# ----------------------------------------------------------------------------- the demo's own node
class DemoClient:
    """The demo's rclpy node in its own context on the private domain, spun by a background thread."""

    def __init__(self, domain_id: int, node_name: str = "fgclip_demo"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self.context = rclpy.Context()
        # No rclpy signal handlers: Ctrl-C stays a KeyboardInterrupt, so the demo's cleanup runs.
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(node_name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self.received: dict[str, list] = {}
        self.last_receive = time.monotonic()
        self._thread = threading.Thread(target=self._spin, name="fgclip-demo-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.1)
        except Exception:  # noqa: BLE001 - the context went away during close()
            pass

    def close(self) -> None:
        import rclpy

        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=10)
        self.executor.shutdown(timeout_sec=5)
        self.node.destroy_node()

    def other_nodes(self) -> list[str]:
        own = (self.node.get_name(), self.node.get_namespace())
        return sorted(
            f"{ns.rstrip('/')}/{name}"
            for name, ns in self.node.get_node_names_and_namespaces()
            if (name, ns) != own
        )

    def record(self, msg_type, topic: str, key: str, raw: bool = False, depth: int = 100):
        """Keep every message of `topic` (CDR bytes with raw=True) in `received[key]`, in arrival order."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.received.setdefault(key, [])

        def store(msg):
            with self._lock:
                self.received[key].append(msg)
                self.last_receive = time.monotonic()

        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        return self.node.create_subscription(msg_type, topic, store, qos, raw=raw)

    def messages(self, key: str) -> list:
        with self._lock:
            return list(self.received.get(key, []))

    def call(self, srv_type, name: str, request, timeout_s: float):
        """One service call; TimeoutError when the service is not there or does not answer in time."""
        client = self.node.create_client(srv_type, name)
        try:
            deadline = time.monotonic() + timeout_s
            while not client.service_is_ready():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"service {name} not available after {timeout_s:g} s")
                time.sleep(0.05)
            done = threading.Event()
            future = client.call_async(request)
            future.add_done_callback(lambda _: done.set())
            if not done.wait(max(deadline - time.monotonic(), 0.1)):
                future.cancel()
                raise TimeoutError(f"no answer from {name} within {timeout_s:g} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def lifecycle_state(self, node: str, timeout_s: float) -> str:
        from lifecycle_msgs.srv import GetState

        return self.call(GetState, f"{node}/get_state", GetState.Request(), timeout_s).current_state.label

    def get_parameter(self, node: str, name: str, timeout_s: float):
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        response = self.call(
            GetParameters, f"{node}/get_parameters", GetParameters.Request(names=[name]), timeout_s
        )
        return parameter_value_to_python(response.values[0]) if response.values else None


@contextmanager
def private_graph_env(domain_id: int):
    """This process's environment set for the private graph (rmw reads it at init), restored afterwards."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(isolated_env(domain_id, saved))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.05):
    """Poll `predicate` until truthy (returned); TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
