"""The Ray identity an AuthorizationPolicy admits, shared with other workloads.

An ALLOW policy that admits a RayCluster's own principal
(``<trust domain>/ns/<namespace>/sa/<serviceAccountName>``) to its GCS and raylets trusts
every pod that runs as that ServiceAccount to run code on the cluster. That holds only while
the ServiceAccount is the cluster's alone. It is not when the Ray pods run as the namespace's
``default`` ServiceAccount (an empty or missing ``serviceAccountName``: every pod of the
namespace that names none runs as it), or when another workload of the input in the same
namespace runs as the same one (Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets,
Jobs, CronJobs, other RayClusters, RayJobs, RayServices).

Without such a policy there is nothing to report: whom the mesh admits is what this family
is about (the ``authz`` family reports policies that admit any source).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..manifests import Manifest
from ..raymodel import Cluster, Group
from . import acknowledge
from .context import Context
from .findings import ERROR, Check
from .kinds import (
    AUTHORIZATION_POLICY,
    CLUSTERS,
    DEFAULT_SERVICE_ACCOUNT,
    RAY_POD,
    WORKLOAD,
    pod_specs,
    service_account,
)
from .policies import allow_policies, names_principal, principal_matches, ray_ports, rule_ports
from .raypods import as_dict, as_list, injection_off, strings

IDENTITY_DEFAULT_SA = Check(
    "identity-default-service-account", ERROR,
    "Ray pods run as the namespace's default ServiceAccount, which an ALLOW policy admits")
IDENTITY_SHARED_SA = Check(
    "identity-shared-service-account", ERROR,
    "another workload runs as the ServiceAccount an ALLOW policy admits to the Ray pods")

CHECKS = (IDENTITY_DEFAULT_SA, IDENTITY_SHARED_SA)
# the Ray clusters and the policies admitting them; every other workload that runs pods
READS = (*CLUSTERS, AUTHORIZATION_POLICY, RAY_POD, WORKLOAD)


def _others(ctx: Context, c: Cluster, cm: Manifest, sa: str) -> list[str]:
    """``Kind/name`` of the input's other workloads in the cluster's namespace running as
    ``sa``; running Ray Pods stand for their RayCluster (or RayJob). The submitter of the
    RayJob that declares this cluster is left to the rayjob family
    (rayjob-submitter-ray-identity), which reports on the same object."""
    out: list[str] = []
    for other_c, m in ctx.clusters:
        if other_c.namespace == c.namespace and m is not cm and any(
                service_account(g.template.get("spec")) == sa for g in other_c.groups):
            out.append(f"{m.kind}/{m.name}")
    for m in ctx.pods:
        owner = strings(as_dict(m.obj.get("metadata")).get("labels")).get("ray.io/cluster", "")
        if (m.namespace(ctx.namespace) == c.namespace and owner != c.name
                and service_account(m.obj.get("spec")) == sa):
            known = next((om for oc, om in ctx.clusters if oc.name_known and oc.name == owner
                          and oc.namespace == c.namespace), None)
            out.append(f"{known.kind}/{known.name}" if known else f"RayCluster/{owner}")
    for m in ctx.workloads:
        if m.namespace(ctx.namespace) == c.namespace and any(
                service_account(s) == sa for s in pod_specs(m)):
            out.append(f"{m.kind}/{m.name}")
    for m in ctx.rayjobs:
        if (m.namespace(ctx.namespace) == c.namespace and not runs_on(m, cm)
                and any(service_account(s) == sa for s in submitter_specs(m))):
            out.append(f"{m.kind}/{m.name}")
    return list(dict.fromkeys(out))


def submitter_specs(m: Manifest) -> Iterator[Any]:
    """The pod spec of a RayJob's submitter Job (K8sJobMode, the default): its template's,
    else KubeRay's default one, which names no ServiceAccount (common/job.go)."""
    spec = as_dict(m.obj.get("spec"))
    if str(spec.get("submissionMode") or "K8sJobMode") == "K8sJobMode":
        yield as_dict(spec.get("submitterPodTemplate")).get("spec")


def runs_on(job: Manifest, cm: Manifest) -> bool:
    """The RayJob declares the cluster reported on ``cm`` (it is that object). A RayJob whose
    clusterSelector names a RayCluster is another workload to it: the RayCluster's owners are
    told its identity is shared, the RayJob's that its submitter has the Ray identity."""
    return job is cm


def _admitting(ctx: Context, c: Cluster, groups: list[Group], sa: str
               ) -> tuple[list[str], str]:
    """Names of the ALLOW policies admitting ``sa`` to the groups' Ray ports, and the
    principal as the first of them writes it."""
    names: list[str] = []
    shown = ""
    for g in groups:
        ports = set(ray_ports(g))
        for p in allow_policies(ctx, c, g):
            for _, rule in p.rules():
                if names_principal(rule, c.namespace, sa) and rule_ports(
                        rule, ports):
                    names.append(p.manifest.name)
                    shown = shown or _principal(rule, c.namespace, sa)
    return list(dict.fromkeys(names)), shown


def _principal(rule: dict[str, Any], namespace: str, sa: str) -> str:
    for f in as_list(rule.get("from")):
        for p in as_list(as_dict(as_dict(f).get("source")).get("principals")):
            if str(p) != "*" and "*" not in str(p) and principal_matches(
                    str(p), namespace, sa):
                return str(p)
    return f"cluster.local/ns/{namespace}/sa/{sa}"


def check(ctx: Context) -> None:
    """Per RayCluster and ServiceAccount of its groups: admitted, and shared?"""
    for c, m in ctx.clusters:
        by_sa: dict[str, list[Group]] = {}
        for g in c.groups:
            if injection_off(g.template):
                continue  # no sidecar admits anyone there (the capture family reports it)
            by_sa.setdefault(service_account(g.template.get("spec")), []).append(g)
        for sa, groups in by_sa.items():
            policies, principal = _admitting(ctx, c, groups, sa)
            if not policies:
                continue
            others = _others(ctx, c, m, sa)
            if sa != DEFAULT_SERVICE_ACCOUNT and not others:
                continue
            _report(ctx, m, c, groups, sa, principal, policies, others)


def _report(ctx: Context, m: Manifest, c: Cluster, groups: list[Group], sa: str,
            principal: str, policies: list[str], others: list[str]) -> None:
    who = " and ".join("the head group" if g.is_head else f"worker group {g.name}"
                       for g in groups)
    run = "runs" if len(groups) == 1 else "run"
    admitted = (f"AuthorizationPolicy {', '.join(policies)} admits that principal, "
                f"{principal}, to the GCS and raylets, where a caller runs code on the cluster")
    listed = f"in the input: {', '.join(others)}" if others else ""
    severity, note = acknowledge.severity(ctx, m, acknowledge.SHARED_IDENTITY)
    if sa == DEFAULT_SERVICE_ACCOUNT:
        check = IDENTITY_DEFAULT_SA
        message = (f"{who} {run} as namespace {c.namespace}'s default ServiceAccount "
                   f"(serviceAccountName unset or default); {admitted}, so every Pod of "
                   f"namespace {c.namespace} that names no other ServiceAccount is admitted too"
                   + (f" ({listed})" if listed else ""))
    else:
        check = IDENTITY_SHARED_SA
        message = (f"{who} {run} as ServiceAccount {sa}; {admitted}, and other workloads run "
                   f"as {sa} too ({listed}): they are admitted as well")
    key = f"{groups[0].path}.template.spec.serviceAccountName"
    ctx.add(check, m, key, principal, message + note,
            "give the RayCluster's pods a ServiceAccount no other workload uses (and admit "
            "only that principal); if sharing it is intended, acknowledge it with "
            f"{acknowledge.ANNOTATION}: {acknowledge.SHARED_IDENTITY} on the RayCluster (the "
            "chart writes it when the values acknowledge the risk)", severity=severity)
