"""A Ray cluster on this machine, run by a process of its own for the tests (``ray.cluster_utils.Cluster``).

The test process only connects (``ray.init(address=...)``): a cluster started inside it would leave
Ray's node handlers registered there, and a process forked from pytest later (tests/test_scoring_fork.py)
would run them at its exit and crash. Commands on stdin, one JSON reply line each on stdout:
``add`` (a node with one CPU: its id), ``remove ID`` (killed as a machine dies: its raylet at once),
``quit``.
"""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

FAST_HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_initial_delay_ms": 0}


class RemoteCluster:
    """The client: a head and ``nodes`` worker nodes (one CPU each) run by this file in a process of
    its own; ``address``, ``add_node`` and ``remove_node`` as ``ray.cluster_utils.Cluster`` has them.
    ``pythonpath``: a directory the nodes' workers import from (the tests' modules)."""

    def __init__(self, nodes: int, pythonpath: str | None = None):
        paths = [pythonpath, os.environ.get("PYTHONPATH")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        self.proc = subprocess.Popen([sys.executable, __file__, str(nodes)], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.address = self._reply()["address"]

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the test cluster's process ended")
        return json.loads(line)

    def _send(self, line: str) -> dict:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def add_node(self, **_) -> SimpleNamespace:
        return SimpleNamespace(node_id=self._send("add")["node_id"])

    def remove_node(self, node, allow_graceful: bool = False) -> None:
        self._send(f"remove {node.node_id}")

    def shutdown(self) -> None:
        self.proc.stdin.close()  # the process shuts the cluster down and ends
        self.proc.wait(timeout=60)


def main() -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "_system_config": FAST_HEALTH})
    nodes = {}
    try:
        for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 0):
            node = cluster.add_node(num_cpus=1)
            nodes[node.node_id] = node
        print(json.dumps({"address": cluster.address}), flush=True)
        for line in sys.stdin:
            cmd, *arg = line.split()
            if cmd == "add":
                node = cluster.add_node(num_cpus=1)
                nodes[node.node_id] = node
                print(json.dumps({"node_id": node.node_id}), flush=True)
            elif cmd == "remove":
                cluster.remove_node(nodes.pop(arg[0]), allow_graceful=False)
                print(json.dumps({"removed": arg[0]}), flush=True)
            else:
                break
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
