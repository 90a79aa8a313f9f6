"""The Ray driver of the e2e workload: runs on the head node, touches every inter-node path.

Run with the Ray venv's python inside the head's namespaces. Prints one JSON object per line:
``{"step": NAME, "ok": bool, "seconds": float, "detail": ...}``; stops at the first failed
step (the cluster may be wedged behind the firewall) and exits 1. After the last step it
prints ``{"event": "hold"}`` and keeps its actors alive until a line arrives on stdin, so the
harness can submit a job and list listening ports while the cluster is loaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def own_listen_ports() -> list[int]:
    """TCP ports this process listens on (a core worker's gRPC port comes from the range)."""
    try:
        import psutil

        proc = psutil.Process()
        conns = (
            proc.net_connections("tcp")
            if hasattr(proc, "net_connections")
            else (proc.connections("tcp"))
        )
        return sorted({c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN})
    except Exception:
        return []


@ray.remote(num_cpus=0)
class Pinned:
    def hello(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "ports": own_listen_ports(),
        }


@ray.remote
def where(i: int) -> str:
    return ray.get_runtime_context().get_node_id()


@ray.remote
def make_blob(mib: int) -> bytes:
    block = hashlib.sha256(b"meshray").digest() * (1024 * 1024 // 32)
    return block * mib


@ray.remote
def digest(blob: bytes) -> tuple[str, str]:
    return hashlib.sha256(blob).hexdigest(), ray.get_runtime_context().get_node_id()


@ray.remote
def call_back(head_node: str, echo: Any) -> dict[str, Any]:
    on_head = NodeAffinitySchedulingStrategy(node_id=head_node, soft=False)
    task_node = ray.get(where.options(scheduling_strategy=on_head).remote(0), timeout=60)
    actor_reply = ray.get(echo.hello.remote(), timeout=60)
    return {
        "task_node": task_node,
        "actor_node": actor_reply["node"],
        "me": ray.get_runtime_context().get_node_id(),
    }


@ray.remote
def read_env() -> dict[str, Any]:
    import meshray_e2e_mod  # shipped by the runtime_env's working_dir

    return {
        "env": os.environ.get("MESHRAY_E2E_ENV"),
        "mod": meshray_e2e_mod.VALUE,
        "node": ray.get_runtime_context().get_node_id(),
    }


class StepFailed(Exception):
    pass


def check(cond: bool, message: str) -> None:
    if not cond:
        raise StepFailed(message)


class Workload:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.timeout: float = args.step_timeout
        self.head = ""
        self.worker = ""
        self.on_worker: NodeAffinitySchedulingStrategy | None = None
        self.actors: list[Any] = []
        self.head_actor: Any = None

    def run(self, name: str, fn: Callable[[], Any]) -> None:
        t0 = time.monotonic()
        try:
            detail = fn()
        except Exception as exc:
            emit(
                {
                    "step": name,
                    "ok": False,
                    "seconds": round(time.monotonic() - t0, 2),
                    "detail": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc()[-2000:],
                }
            )
            sys.stdout.flush()
            os._exit(1)  # do not wait on a wedged cluster; the harness tears it down
        emit(
            {"step": name, "ok": True, "seconds": round(time.monotonic() - t0, 2), "detail": detail}
        )

    # -- steps -------------------------------------------------------------------------------
    def cluster_ready(self) -> Any:
        # A job-level working_dir (tasks may not upload local dirs): every worker of this job,
        # on either node, fetches it from the GCS through its node's runtime-env agent.
        wd = tempfile.mkdtemp()
        with open(os.path.join(wd, "meshray_e2e_mod.py"), "w") as f:
            f.write("VALUE = 'from-working-dir'\n")
        ray.init(
            address="auto",
            logging_level="WARNING",
            log_to_driver=False,
            runtime_env={"working_dir": wd},
        )
        self.head = ray.get_runtime_context().get_node_id()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            others = [n for n in alive if n["NodeID"] != self.head]
            if len(alive) >= 2 and others:
                self.worker = others[0]["NodeID"]
                self.on_worker = NodeAffinitySchedulingStrategy(node_id=self.worker, soft=False)
                return {n["NodeID"][:8]: n.get("NodeManagerAddress") for n in alive}
            time.sleep(0.5)
        raise StepFailed("the worker node never joined")

    def actors_on_worker(self) -> Any:
        ports = []
        for i in range(self.args.actors):  # one at a time: each draws the next worker port
            actor = Pinned.options(scheduling_strategy=self.on_worker).remote()
            self.actors.append(actor)
            reply = ray.get(actor.hello.remote(), timeout=self.timeout)
            check(reply["node"] == self.worker, f"actor {i} ran on {reply['node']}")
            ports.append(reply["ports"])
        # Every actor answers again (all of them alive at once).
        replies = ray.get([a.hello.remote() for a in self.actors], timeout=self.timeout)
        check(len({r["pid"] for r in replies}) == len(self.actors), "actors share a process")
        return {"actors": len(self.actors), "ports": ports}

    def spread_tasks(self) -> Any:
        # SPREAD is best effort: tiny tasks may all finish on the driver's node before the
        # worker is leased any. Submit batches (bounded by the step timeout) until both nodes
        # have run some; a worker that cannot be reached makes ray.get time out instead.
        counts: dict[str, int] = {}
        deadline = time.monotonic() + self.timeout
        batches = 0
        while time.monotonic() < deadline:
            refs = [
                where.options(scheduling_strategy="SPREAD").remote(i)
                for i in range(self.args.tasks)
            ]
            for n in ray.get(refs, timeout=max(1.0, deadline - time.monotonic())):
                counts[n] = counts.get(n, 0) + 1
            batches += 1
            if self.worker in counts and self.head in counts:
                return {"batches": batches, **{n[:8]: c for n, c in counts.items()}}
        raise StepFailed(f"not spread: {counts}")

    def tasks_on_worker(self) -> Any:
        n = max(10, self.args.tasks // 10)
        nodes = ray.get(
            [where.options(scheduling_strategy=self.on_worker).remote(i) for i in range(n)],
            timeout=self.timeout,
        )
        check(set(nodes) == {self.worker}, "a pinned task ran elsewhere")
        return {"tasks": n}

    def object_pull_worker_to_head(self) -> Any:
        ref = make_blob.options(scheduling_strategy=self.on_worker).remote(self.args.object_mib)
        blob = ray.get(ref, timeout=self.timeout)
        want = hashlib.sha256(b"meshray").digest() * (1024 * 1024 // 32) * self.args.object_mib
        check(blob == want, f"got {len(blob)} bytes, not the blob the worker made")
        return {"bytes": len(blob)}

    def object_push_head_to_worker(self) -> Any:
        blob = os.urandom(1024 * 1024) * self.args.object_mib
        ref = ray.put(blob)
        got, node = ray.get(
            digest.options(scheduling_strategy=self.on_worker).remote(ref), timeout=self.timeout
        )
        check(node == self.worker, "digest ran elsewhere")
        check(got == hashlib.sha256(blob).hexdigest(), "object corrupted in transfer")
        return {"bytes": len(blob)}

    def worker_calls_head(self) -> Any:
        self.head_actor = Pinned.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(self.head, soft=False)
        ).remote()
        reply = ray.get(
            call_back.options(scheduling_strategy=self.on_worker).remote(
                self.head, self.head_actor
            ),
            timeout=self.timeout,
        )
        check(reply["me"] == self.worker, "callback task ran on the head")
        check(
            reply["task_node"] == self.head and reply["actor_node"] == self.head,
            f"callback did not reach the head: {reply}",
        )
        return {"ok": True}

    def runtime_env_task(self) -> Any:
        env = {"env_vars": {"MESHRAY_E2E_ENV": "driver-env"}}
        reply = ray.get(
            read_env.options(scheduling_strategy=self.on_worker, runtime_env=env).remote(),
            timeout=self.timeout,
        )
        check(
            reply == {"env": "driver-env", "mod": "from-working-dir", "node": self.worker},
            f"runtime_env not applied on the worker: {reply}",
        )
        return reply

    def state_api(self) -> Any:
        from ray.util import state

        nodes = state.list_nodes(timeout=int(self.timeout))
        alive = [n for n in nodes if n.state == "ALIVE"]
        check(len(alive) >= 2, f"state API sees {len(alive)} alive nodes")
        actors = state.list_actors(
            filters=[("state", "=", "ALIVE")],
            timeout=int(self.timeout),
            raise_on_missing_output=False,
        )
        on_worker = [a for a in actors if a.node_id == self.worker]
        check(len(on_worker) >= len(self.actors), f"{len(on_worker)} actors on the worker")
        workers = state.list_workers(timeout=int(self.timeout), raise_on_missing_output=False)
        objects = state.list_objects(timeout=int(self.timeout), raise_on_missing_output=False)
        tasks = state.list_tasks(timeout=int(self.timeout), raise_on_missing_output=False)
        return {
            "nodes": len(alive),
            "actors_on_worker": len(on_worker),
            "workers": len(workers),
            "objects": len(objects),
            "tasks": len(tasks),
        }

    def log_listing(self) -> Any:
        from ray.util import state

        listing = state.list_logs(node_id=self.worker, timeout=int(self.timeout))
        files = [f for files in listing.values() for f in files]
        check(bool(files), "no log files listed for the worker node")
        name = next((f for f in files if f.startswith("raylet") and f.endswith(".out")), files[0])
        lines = list(
            state.get_log(node_id=self.worker, filename=name, tail=20, timeout=int(self.timeout))
        )
        check(bool(lines), f"empty log {name} from the worker")
        return {"files": len(files), "read": name}

    def metrics_scrape_worker(self) -> Any:
        url = f"http://{self.args.worker_ip}:{self.args.worker_metrics_port}/metrics"
        deadline = time.monotonic() + self.timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    body = resp.read().decode(errors="replace")
                ray_lines = [ln for ln in body.splitlines() if ln.startswith("ray_")]
                if ray_lines:
                    return {"url": url, "ray_samples": len(ray_lines)}
                last = "no ray_ samples yet"
            except OSError as exc:
                last = repr(exc)
            time.sleep(1)
        raise StepFailed(f"{url}: {last}")

    def main(self) -> None:
        a = self.args
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("cluster_ready", self.cluster_ready),
            ("actors_on_worker", self.actors_on_worker),
            ("spread_tasks", self.spread_tasks),
            ("tasks_on_worker", self.tasks_on_worker),
        ]
        if a.profile in ("full", "smoke"):
            steps.append(("object_pull_worker_to_head", self.object_pull_worker_to_head))
        if a.profile == "full":
            steps += [
                ("object_push_head_to_worker", self.object_push_head_to_worker),
                ("worker_calls_head", self.worker_calls_head),
                ("runtime_env_task", self.runtime_env_task),
                ("state_api", self.state_api),
                ("log_listing", self.log_listing),
            ]
        if a.profile in ("full", "smoke"):
            steps.append(("metrics_scrape_worker", self.metrics_scrape_worker))
        for name, fn in steps:
            self.run(name, fn)
        emit({"event": "hold"})
        sys.stdin.readline()
        emit({"event": "released"})
        os._exit(0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--profile", choices=["full", "smoke", "sizing"], default="full")
    p.add_argument("--actors", type=int, default=8)
    p.add_argument("--tasks", type=int, default=5000)
    p.add_argument("--object-mib", type=int, default=64)
    p.add_argument("--step-timeout", type=float, default=120)
    p.add_argument("--worker-ip", required=True)
    p.add_argument("--worker-metrics-port", type=int, default=8080)
    Workload(p.parse_args()).main()


if __name__ == "__main__":
    main()
