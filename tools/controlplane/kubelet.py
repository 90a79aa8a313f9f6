#!/usr/bin/env python3
"""A kubelet stand-in for the local control plane: it plays the node for every Pod.

What a kubelet would report, written through the API server's own subresources:
- a Pod with no node is bound to the Node (the binding subresource, as the scheduler does);
- a bound Pod without an IP gets one, phase Running, every container running and ready, init
  containers completed, and the Ready condition (the status subresource), so the
  EndpointSlice controller publishes real endpoints;
- a Pod being deleted gracefully is deleted for good (a kubelet confirms deletion once its
  containers are gone; without one a bound Pod would stay Terminating forever).

A namespace can be held (``hold``/``release``): its Pods are left alone, unbound and not Ready,
as on a node that has not started them yet, so a test can watch what a controller does before
its Pods are Ready. ``finish`` reports a played Pod's containers as exited (a Job's Pod).

No container runs. The e2e suite that starts real Ray for a Pod gives its own ``ip_for`` so the
Pod's IP is the address of the network namespace that plays it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import sys
import threading
from collections.abc import Callable
from typing import Any

NODE_NAME = "meshray-node"
DEFAULT_POD_CIDR = "10.244.0.0/16"  # allocated only; nothing is ever sent to these addresses


class IpPool:
    def __init__(self, cidr: str = DEFAULT_POD_CIDR) -> None:
        self._hosts = ipaddress.ip_network(cidr).hosts()
        self._lock = threading.Lock()

    def __call__(self, pod: Any) -> str:
        with self._lock:
            return str(next(self._hosts))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_status(pod: Any, ip: str) -> dict[str, Any]:
    now = _now()
    spec = pod.spec

    def cstatus(c: Any, init: bool) -> dict[str, Any]:
        state: dict[str, Any]
        if init and c.restart_policy != "Always":
            state = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": now,
                    "finishedAt": now,
                }
            }
        else:
            state = {"running": {"startedAt": now}}
        return {
            "name": c.name,
            "image": c.image,
            "imageID": "",
            "ready": True,
            "restartCount": 0,
            "started": True,
            "state": state,
        }

    conds = [
        {"type": t, "status": "True", "lastTransitionTime": now}
        for t in (
            "PodReadyToStartContainers",
            "PodScheduled",
            "Initialized",
            "ContainersReady",
            "Ready",
        )
    ]
    return {
        "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now,
            "conditions": conds,
            "containerStatuses": [cstatus(c, False) for c in spec.containers],
            "initContainerStatuses": [cstatus(c, True) for c in (spec.init_containers or [])],
        }
    }


def finished_status(pod: Any, exit_code: int) -> dict[str, Any]:
    """The status a kubelet reports once a Pod's containers have exited (restartPolicy Never):
    phase Succeeded (every exit 0) or Failed, every container terminated with ``exit_code``,
    so a Job controller counts the Pod as succeeded or failed."""
    now = _now()
    reason = "Completed" if exit_code == 0 else "Error"

    def cstatus(c: Any) -> dict[str, Any]:
        return {
            "name": c.name,
            "image": c.image,
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": reason,
                    "startedAt": now,
                    "finishedAt": now,
                }
            },
        }

    return {
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "conditions": [
                {"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}
                for t in ("Ready", "ContainersReady")
            ],
            "containerStatuses": [cstatus(c) for c in pod.spec.containers],
        }
    }


class Kubelet:
    """Polls every Pod and plays the node for it. Run with ``start()`` (a daemon thread) or
    ``run_forever()``; ``only`` restricts it to Pods a predicate accepts."""

    def __init__(
        self,
        api: Any,
        ip_for: Callable[[Any], str] | None = None,
        only: Callable[[Any], bool] | None = None,
        interval: float = 0.2,
    ) -> None:
        from kubernetes import client

        self.core = client.CoreV1Api(api)
        self.ip_for = ip_for or IpPool()
        self.only = only
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        self._held: set[str] = set()
        self._held_lock = threading.Lock()

    def hold(self, namespace: str) -> None:
        """Leave the Pods of ``namespace`` alone (unbound, not Ready) until ``release``."""
        with self._held_lock:
            self._held.add(namespace)

    def release(self, namespace: str) -> None:
        """Play the Pods of ``namespace`` again from the next tick."""
        with self._held_lock:
            self._held.discard(namespace)

    def held(self, namespace: str) -> bool:
        with self._held_lock:
            return namespace in self._held

    def tick(self) -> None:
        from kubernetes.client.rest import ApiException

        for pod in self.core.list_pod_for_all_namespaces().items:
            if self.only and not self.only(pod):
                continue
            name, ns = pod.metadata.name, pod.metadata.namespace
            if self.held(ns):  # a held namespace: its Pods wait as on a node not started yet
                continue
            try:
                if pod.metadata.deletion_timestamp:
                    self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
                elif not pod.spec.node_name:
                    self.core.create_namespaced_binding(
                        ns,
                        {
                            "apiVersion": "v1",
                            "kind": "Binding",
                            "metadata": {"name": name, "namespace": ns},
                            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
                        },
                        _preload_content=False,
                    )
                elif not pod.status.pod_ip:
                    self.core.patch_namespaced_pod_status(
                        name, ns, running_status(pod, self.ip_for(pod))
                    )
            except ApiException as e:
                if e.status not in (404, 409):  # gone or changed meanwhile: next tick
                    self.errors.append(f"{ns}/{name}: {e.status} {e.reason}")

    def finish(self, namespace: str, name: str, exit_code: int = 0) -> None:
        """Report a played Pod's containers as exited with ``exit_code`` (a Job's Pod whose
        process ended): phase Succeeded or Failed through the status subresource."""
        pod = self.core.read_namespaced_pod(name, namespace)
        self.core.patch_namespaced_pod_status(name, namespace, finished_status(pod, exit_code))

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as e:  # the API server restarting, etc.: keep playing
                self.errors.append(repr(e))
            self._stop.wait(self.interval)

    def start(self) -> Kubelet:
        self._thread = threading.Thread(target=self.run_forever, daemon=True, name="kubelet")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="kubelet stand-in for the local control plane")
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--pod-cidr", default=DEFAULT_POD_CIDR)
    args = ap.parse_args(argv)
    from kubernetes import config

    api = config.new_client_from_config(config_file=args.kubeconfig)
    Kubelet(api, IpPool(args.pod_cidr)).run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
