"""Istio PeerAuthentication around Ray pods: does a policy apply, and does it say what it means.

A selector policy applies to the pods it matches in its namespace; one without a selector to
its namespace (or, in the root namespace, the mesh). ``portLevelMtls`` keys on container
ports and only works with a selector.
"""

from __future__ import annotations

from typing import Any

from ..manifests import Manifest
from ..raymodel import Cluster, as_int
from .context import Context
from .findings import ERROR, INFO, WARNING, Check
from .kinds import CLUSTERS, PEER_AUTHENTICATION
from .raypods import injection_off

PEERAUTH_NO_MATCH = Check(
    "peerauth-no-match", ERROR, "a PeerAuthentication with ray.io/ selector that selects no pods")
PEERAUTH_PORT_UNUSED = Check(
    "peerauth-port-unused", ERROR, "portLevelMtls on a port the selected pods do not use")
PEERAUTH_PORT_NO_SELECTOR = Check(
    "peerauth-port-no-selector", ERROR, "portLevelMtls without a selector (Istio ignores it)")
PEERAUTH_ROOT_SELECTOR = Check(
    "peerauth-root-selector", WARNING, "selector policy in the root namespace (Istio ignores it)")
PEERAUTH_PERMISSIVE = Check(
    "peerauth-permissive", WARNING, "PERMISSIVE or DISABLE mTLS applies to Ray pods")
PEERAUTH_NONE = Check(
    "peerauth-none", INFO, "no PeerAuthentication in the input applies to the cluster")

CHECKS = (PEERAUTH_NO_MATCH, PEERAUTH_PORT_UNUSED, PEERAUTH_PORT_NO_SELECTOR,
          PEERAUTH_ROOT_SELECTOR, PEERAUTH_PERMISSIVE, PEERAUTH_NONE)
# the PeerAuthentications and the Ray clusters they apply to
READS = (*CLUSTERS, PEER_AUTHENTICATION)

# Serve's default proxy ports: legitimate portLevelMtls keys even when no env pins them
_SERVE_DEFAULT_PORTS = {8000, 9000}


def _parts(pa: Manifest) -> tuple[dict[str, str], str, dict[str, Any]]:
    """(selector matchLabels, mTLS mode, portLevelMtls) of a policy."""
    spec = pa.obj.get("spec") if isinstance(pa.obj.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    sel = spec.get("selector")
    labels = sel.get("matchLabels") if isinstance(sel, dict) else None
    mtls = spec.get("mtls")
    mode = str(mtls.get("mode") or "UNSET").upper() if isinstance(mtls, dict) else "UNSET"
    plm = spec.get("portLevelMtls")
    return ({str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
            mode, plm if isinstance(plm, dict) else {})


def _applies(ctx: Context, pa: Manifest, c: Cluster) -> bool:
    labels, _, _ = _parts(pa)
    ns = pa.namespace(ctx.namespace)
    if not labels:
        return ns in {c.namespace, ctx.root_namespace}
    return ns == c.namespace and any(
        all(g.pod_labels(c.name).get(k) == v for k, v in labels.items()) for g in c.groups)


def check_cluster(ctx: Context, c: Cluster, m: Manifest) -> None:
    """peerauth-none: the cluster's mTLS mode is left to namespace or mesh defaults."""
    if all(injection_off(g.template) for g in c.groups):
        return  # no sidecar to take a mode (the capture family reports each group)
    if not any(_applies(ctx, pa, c) for pa in ctx.peerauths):
        ctx.add(PEERAUTH_NONE, m, "metadata.name", None,
                "no PeerAuthentication in the input applies to this cluster; the namespace or "
                "mesh default decides its mTLS mode",
                f"add a PeerAuthentication selecting {c.selector_hint()} with mtls.mode STRICT")


def check(ctx: Context) -> None:
    """Every other check, policy by policy."""
    for pa in ctx.peerauths:
        labels, mode, plm = _parts(pa)
        ns = pa.namespace(ctx.namespace)
        matched = [(c, g) for c, _ in ctx.clusters if c.namespace == ns for g in c.groups
                   if labels and all(g.pod_labels(c.name).get(k) == v for k, v in labels.items())]
        if labels and ns == ctx.root_namespace:
            ctx.add(PEERAUTH_ROOT_SELECTOR, pa, "spec.selector", labels,
                    f"Istio ignores workload selectors in the root namespace {ns}",
                    "move the policy to the Ray cluster's namespace")
        # selecting a RayJob's name as ray.io/cluster: the rayjob family says why on this object
        by_job = any(c.job and c.job == labels.get("ray.io/cluster") and c.namespace == ns
                     for c, _ in ctx.clusters)
        if (labels and not matched and any(k.startswith("ray.io/") for k in labels)
                and not by_job):
            ctx.add(PEERAUTH_NO_MATCH, pa, "spec.selector.matchLabels", labels,
                    f"selects no Ray pods of any RayCluster in namespace {ns}",
                    "match ray.io/cluster: <cluster name> of the RayCluster")
        if plm and not labels:
            ctx.add(PEERAUTH_PORT_NO_SELECTOR, pa, "spec.portLevelMtls", sorted(map(str, plm)),
                    "portLevelMtls only applies to policies with a workload selector",
                    "add spec.selector.matchLabels, or move the ports to a selector policy")
        if plm and matched:
            used = set().union(*(g.all_ports() for _, g in matched)) | _SERVE_DEFAULT_PORTS
            for port_key in plm:
                n = as_int(port_key)
                if n is None or n not in used:
                    ctx.add(PEERAUTH_PORT_UNUSED, pa, f"spec.portLevelMtls.{port_key}",
                            port_key,
                            "no selected Ray container listens on this port (portLevelMtls keys "
                            "on the container port, not the Service port)",
                            "use the container port number the Ray flag pins")
        # only sidecars take a mode: groups kept out of the mesh are the capture family's
        meshed = [(c, g) for c, g in matched if not injection_off(g.template)]
        applies = bool(meshed) or (not labels and any(
            (c.namespace == ns or ns == ctx.root_namespace)
            and not all(injection_off(g.template) for g in c.groups) for c, _ in ctx.clusters))
        if applies and mode in {"PERMISSIVE", "DISABLE"}:
            ctx.add(PEERAUTH_PERMISSIVE, pa, "spec.mtls.mode", mode,
                    f"{mode} lets plaintext reach the Ray pods (Ray's dashboard and client run "
                    "code for anyone who reaches them)", "use mode STRICT")
        if applies:
            for port_key, setting in plm.items():
                pmode = str(setting.get("mode") if isinstance(setting, dict) else "").upper()
                if pmode in {"PERMISSIVE", "DISABLE"}:
                    ctx.add(PEERAUTH_PERMISSIVE, pa, f"spec.portLevelMtls.{port_key}.mode",
                            pmode, f"port {port_key} accepts plaintext",
                            "drop the port-level exception or make it STRICT")
