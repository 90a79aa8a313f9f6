"""helm upgrade that changes the port map, and helm rollback, with the real operators.

Measured first (REFERENCE §2): an operator updates the RayCluster but leaves running Pods with
their old `ray start` flags, so a shifted worker range leaves Ray on ports the Service no longer
declares. The chart therefore renders `spec.upgradeStrategy.type: Recreate` (KubeRay >= 1.6.0
then replaces every Pod when the spec changes), and where the live RayCluster has no Recreate
strategy (KubeRay < 1.6 prunes or refuses the field) `helm upgrade` refuses a port-map change
with the remedy, unless `kuberay.allowPortChangeWithoutRecreate` says the user will delete the
Pods. After every step the oracle (oracle.py) must hold for every running Pod.
"""

from __future__ import annotations

from typing import Any

import pytest
from cases import OPERATOR_SETS
from kube import CHART, HELMS, Cluster, Helm, ray_pods, running, wait_for
from kubernetes import client
from oracle import check_cluster

RELEASE = "up"
SHIFT = ("ports.minWorkerPort=10102", "ports.maxWorkerPort=10151")
# Naming the default group keeps it: an empty workerGroups map means one group "workergroup",
# so setting only "extra" would replace it (and KubeRay v1.1.0 leaves a removed group's pods
# running, measured).
ADD_GROUP = (
    "workerGroups.workergroup.replicas=1",
    "workerGroups.extra.replicas=1",
    "workerGroups.extra.minReplicas=0",
    "workerGroups.extra.maxReplicas=2",
)
SERVE = ("serve.enabled=true",)


def _sets(*groups: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for g in groups:
        for s in g:
            out += ["--set", s]
    return out


class Upgrader:
    def __init__(self, cluster: Cluster, helm_name: str) -> None:
        self.cluster = cluster
        self.helm = Helm(HELMS[helm_name], cluster.kubeconfig)
        self.ns = f"upgrade-{helm_name}"
        self.core = client.CoreV1Api(cluster.api)
        self.base = _sets(OPERATOR_SETS.get(cluster.version, ()))
        self.name = f"{RELEASE}-meshray"

    def install(self) -> None:
        self.helm.run(
            "install", RELEASE, str(CHART), "-n", self.ns, "--create-namespace", *self.base
        )

    def upgrade(self, *groups: tuple[str, ...], check: bool = True) -> Any:
        return self.helm.run(
            "upgrade",
            RELEASE,
            str(CHART),
            "-n",
            self.ns,
            "--reset-values",
            *self.base,
            *_sets(*groups),
            check=check,
        )

    def expected_pods(self) -> int:
        rc = client.CustomObjectsApi(self.cluster.api).get_namespaced_custom_object(
            "ray.io", "v1", self.ns, "rayclusters", self.name
        )
        return 1 + sum(int(g.get("replicas", 0)) for g in rc["spec"].get("workerGroupSpecs", []))

    def pods(self) -> list[Any]:
        return ray_pods(self.core, self.ns, self.name)

    def uids(self) -> set[str]:
        return {p.metadata.uid for p in self.pods()}

    def settled(self, timeout: float = 90) -> list[str]:
        """Wait for the expected number of running Pods and a clean oracle; on timeout return
        the oracle's problems."""
        last: list[str] = []

        def ok() -> bool:
            nonlocal last
            pods = self.pods()
            if len(pods) != self.expected_pods() or not running(pods):
                last = [f"{len(pods)} pods, want {self.expected_pods()} running"]
                return False
            last, _ = check_cluster(self.core, self.ns, self.name)
            return not last

        try:
            wait_for("pods matching the Services", ok, timeout=timeout)
        except AssertionError:
            return last or ["timed out"]
        return []

    def delete_pods(self) -> None:
        """The remedy the chart prints for operators without Recreate."""
        self.core.delete_collection_namespaced_pod(
            self.ns, label_selector=f"ray.io/cluster={self.name}"
        )


@pytest.mark.parametrize("helm_name", list(HELMS))
def test_upgrade_and_rollback_keep_pods_on_the_service_ports(
    cluster: Cluster, helm_name: str
) -> None:
    u = Upgrader(cluster, helm_name)
    u.install()
    assert u.settled() == []
    recreate = cluster.version != "v1.1.0"

    applied: list[tuple[str, ...]] = []
    for step in (SHIFT, ADD_GROUP, SERVE):
        applied.append(step)
        before = u.uids()
        res = u.upgrade(*applied, check=False)
        changes_port_map = step is not ADD_GROUP
        if recreate or not changes_port_map:
            assert res.returncode == 0, res.stderr
        else:
            # No Recreate strategy on the live RayCluster: refused, with the remedy.
            assert res.returncode != 0, f"{step} was not refused"
            assert "kuberay.upgradeStrategy" in res.stderr, res.stderr
            assert "kubectl delete pod" in res.stderr, res.stderr
            u.upgrade(*applied, ("kuberay.allowPortChangeWithoutRecreate=true",))
            # The operator leaves the old Pods alone: the oracle must see the stale flags.
            assert u.settled(timeout=10), "stale pods were expected to fail the oracle"
            u.delete_pods()
        assert u.settled() == [], f"after {step}"
        if recreate and changes_port_map:
            assert not (before & u.uids()), "Recreate should have replaced every pod"

    res = u.helm.run("rollback", RELEASE, "1", "-n", u.ns, check=False)
    assert res.returncode == 0, res.stderr
    if not recreate:
        assert u.settled(timeout=10), "v1.1.0 keeps stale pods after rollback"
        u.delete_pods()
    assert u.settled() == [], "after rollback"
    u.helm.run("uninstall", RELEASE, "-n", u.ns)


def test_upgrade_strategy_needs_kuberay_1_6(cluster: Cluster) -> None:
    """Why OPERATOR_SETS clears kuberay.upgradeStrategy for v1.1.0: its CRD has no such field
    and Helm 4's server-side apply refuses unknown fields (so the upgrade guard reads the live
    object, not the values). With v1.6.2 the field is stored as rendered."""
    helm = Helm(HELMS["helm4"], cluster.kubeconfig)
    ns = "strategy-helm4"
    res = helm.run("install", "strat", str(CHART), "-n", ns, "--create-namespace", check=False)
    if cluster.version == "v1.1.0":
        assert res.returncode != 0
        assert "upgradeStrategy" in res.stderr, res.stderr
        return
    assert res.returncode == 0, res.stderr
    rc = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        "ray.io", "v1", ns, "rayclusters", "strat-meshray"
    )
    assert rc["spec"]["upgradeStrategy"] == {"type": "Recreate"}
    helm.run("uninstall", "strat", "-n", ns)
