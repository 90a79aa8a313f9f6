"""meshray/audit/netpolicy.py: a RayCluster's own spec.networkPolicy (KubeRay 1.7) against
the istio-proxy sidecars of its pods.

The oracle is KubeRay v1.7.0's NetworkPolicy controller, read from its source
(../shared/kuberay, controllers/ray/networkpolicy_controller.go) and its sample
config/samples/ray-cluster.network-policy-deny-all.yaml: under mode DenyAll (the default) or
DenyAllEgress each group's egress is the cluster's own pods plus the egressRules of ``head``,
of the group's ``workerGroups`` entry (replacing ``worker``), else of ``worker``; and Istio's
sidecar needs istiod on port 15012 (istio-system) for its configuration and certificate.
"""

from __future__ import annotations

from typing import Any

from audit_support import (
    Case,
    Docs,
    Mutation,
    base,
    cluster,
    head,
    run,
    worker,
)

CHECK = "kuberay-netpol-blocks-istiod"
# the KubeRay sample's DNS rule: to kube-dns in kube-system on port 53
DNS: dict[str, Any] = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
ISTIOD: dict[str, Any] = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
            "podSelector": {"matchLabels": {"app": "istiod"}}}],
    "ports": [{"port": 15012, "protocol": "TCP"}]}


def policy(**fields: Any) -> Mutation:
    """Sidecar pods (the chart's label) and ``spec.networkPolicy`` set to ``fields``."""
    def mutate(d: Docs) -> None:
        for g in (head(d), worker(d)):
            g["template"].setdefault("metadata", {}).setdefault("labels", {})[
                "sidecar.istio.io/inject"] = "true"
        cluster(d)["spec"]["networkPolicy"] = fields
    return mutate


def only_dns(**extra: Any) -> Mutation:
    """The KubeRay sample's policy: DNS egress only, for the head and the workers."""
    return policy(head={"egressRules": [DNS]}, worker={"egressRules": [DNS]}, **extra)


CASES: list[Case] = [
    # the KubeRay sample, as is: DenyAll with DNS egress only
    (CHECK, "error", only_dns(mode="DenyAll")),
    (CHECK, "error", only_dns()),  # DenyAll is the default mode
    (CHECK, "error", only_dns(mode="DenyAllEgress")),
    # istiod allowed for the head only: the workers still cannot reach it
    (CHECK, "error", policy(head={"egressRules": [DNS, ISTIOD]}, worker={"egressRules": [DNS]})),
    # a workerGroups entry replaces `worker`, which reaches istiod
    (CHECK, "error", policy(head={"egressRules": [ISTIOD]}, worker={"egressRules": [ISTIOD]},
                            workerGroups=[{"groupName": "cpu", "egressRules": [DNS]}])),
    # no rules at all: the cluster's own pods only
    (CHECK, "error", policy(mode="DenyAll")),
    # 15012 admitted, but to kube-system only
    (CHECK, "error", policy(head={"egressRules": [{**ISTIOD, "to": DNS["to"]}]},
                            worker={"egressRules": [ISTIOD]})),
]


def test_finding_names_the_group_the_rules_and_istiod() -> None:
    docs = base()
    only_dns(mode="DenyAll")(docs)
    found = sorted((f.key, f.value) for f in run(docs) if f.check == CHECK)
    assert found == [("spec.networkPolicy.head.egressRules", "DenyAll"),
                     ("spec.networkPolicy.worker.egressRules", "DenyAll")]
    [w] = [f for f in run(docs) if f.check == CHECK and "worker" in f.key]
    assert "worker group cpu" in w.message and "15012" in w.message
    assert "istio-system" in w.message and "53/UDP, 53/TCP" in w.message
    assert "15012" in w.fix and "istio-system" in w.fix


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    ("istiod admitted", policy(head={"egressRules": [DNS, ISTIOD]},
                               worker={"egressRules": [DNS, ISTIOD]})),
    ("ingress only", only_dns(mode="DenyAllIngress")),
    ("a rule to anywhere on 15012", policy(
        head={"egressRules": [{"ports": [{"port": 15012}]}]},
        worker={"egressRules": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]})),
    ("the group's own entry reaches istiod", policy(
        head={"egressRules": [ISTIOD]}, worker={"egressRules": [DNS]},
        workerGroups=[{"groupName": "cpu", "egressRules": [ISTIOD]}])),
    ("a port range over 15012", policy(
        head={"egressRules": [{**ISTIOD, "ports": [{"port": 15000, "endPort": 15100}]}]},
        worker={"egressRules": [ISTIOD]})),
    # no sidecar to feed: ambient pods (ztunnel talks to istiod, not the pod)
    ("ambient pods", lambda d: (only_dns()(d), [
        g["template"]["metadata"].update(labels={"istio.io/dataplane-mode": "ambient"})
        for g in (head(d), worker(d))])),
]
