"""The state one audit run shares between check families: the input by kind, and findings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..manifests import Manifest
from ..raymodel import Cluster
from ..services import Service
from .findings import Check, Finding


@dataclass
class Context:
    namespace: str  # for objects that set none
    root_namespace: str  # Istio's root namespace (mesh-wide policies)
    findings: list[Finding] = field(default_factory=list)
    clusters: list[tuple[Cluster, Manifest]] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    peerauths: list[Manifest] = field(default_factory=list)
    ingresses: list[Manifest] = field(default_factory=list)
    pods: list[Manifest] = field(default_factory=list)  # running Ray Pods (audit --cluster)
    sidecars: list[Manifest] = field(default_factory=list)  # Istio Sidecars
    authz: list[Manifest] = field(default_factory=list)  # Istio AuthorizationPolicies
    netpols: list[Manifest] = field(default_factory=list)  # Kubernetes NetworkPolicies
    gateway_api: list[Manifest] = field(default_factory=list)  # routes, ReferenceGrants
    gateways: list[Manifest] = field(default_factory=list)  # Gateway API Gateways (waypoints)
    # what else runs pods (Deployments, Jobs, RayServices, other Pods...): whose identity they use
    workloads: list[Manifest] = field(default_factory=list)
    # RayJobs (their cluster, when they declare one, is also in ``clusters``)
    rayjobs: list[Manifest] = field(default_factory=list)
    # Namespace objects: which namespaces label their pods for sidecar injection
    namespaces: list[Manifest] = field(default_factory=list)

    def add(self, check: Check, m: Manifest, key: str, value: Any, message: str, fix: str,
            severity: str | None = None) -> None:
        """Report ``check`` on object ``m`` at ``key``; ``severity`` overrides its default."""
        self.findings.append(Finding(
            severity=severity or check.severity, check=check.id, kind=m.kind,
            namespace=m.namespace(self.namespace), name=m.name, key=key, value=value,
            message=message, fix=fix, source=m.source))
