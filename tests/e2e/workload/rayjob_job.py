"""The RayJob's entrypoint in the e2e suite (ConfigMap `rayjob-code`, key `job.py`, mounted on
the head at /home/ray/job as values-examples/rayjob.yaml says; tests/e2e/test_rayjob.py creates
it). Runs as the job's driver on the head: tasks spread over the cluster, then one line with
the result. Exits non-zero (the Ray job FAILED) unless two nodes are alive and both ran tasks.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import time

import ray

TASKS = 40


@ray.remote
def where(i: int) -> str:
    """The node this task ran on (a short sleep, so one node cannot take them all at once)."""
    time.sleep(0.05)
    return str(ray.get_runtime_context().get_node_id())


def main() -> int:
    ray.init()  # the job's cluster: the job supervisor gives the driver its address
    alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    refs = [where.options(scheduling_strategy="SPREAD").remote(i) for i in range(TASKS)]
    seen = collections.Counter(ray.get(refs, timeout=240))
    result = {
        "nodes": len(alive),
        "tasks": sum(seen.values()),
        "tasks_per_node": sorted(seen.values()),
        "nodes_with_tasks": len(set(seen) & set(alive)),
        # From the RayJob's runtimeEnvYAML (env_vars), through the submitter's --runtime-env-json.
        "greeting": os.environ.get("JOB_GREETING", ""),
    }
    print("MESHRAY_RAYJOB_RESULT " + json.dumps(result, sort_keys=True), flush=True)
    return 0 if len(alive) == 2 and set(seen) == set(alive) else 1


if __name__ == "__main__":
    sys.exit(main())
