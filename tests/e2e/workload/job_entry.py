"""Entrypoint of the e2e job: checks its runtime_env on the head and on the worker node."""

from __future__ import annotations

import os

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@ray.remote
def probe() -> dict[str, object]:
    import meshray_job_mod

    return {
        "env": os.environ.get("MESHRAY_JOB_ENV"),
        "mod": meshray_job_mod.VALUE,
        "node": ray.get_runtime_context().get_node_id(),
    }


def main() -> None:
    ray.init()
    me = ray.get_runtime_context().get_node_id()
    others = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["NodeID"] != me]
    assert others, "the job sees no other node"
    on_other = NodeAffinitySchedulingStrategy(node_id=others[0], soft=False)
    reply = ray.get(probe.options(scheduling_strategy=on_other).remote(), timeout=120)
    assert reply == {"env": "job-env", "mod": "job-working-dir", "node": others[0]}, reply
    assert os.environ.get("MESHRAY_JOB_ENV") == "job-env"
    print("MESHRAY_JOB_OK", reply)


if __name__ == "__main__":
    main()
