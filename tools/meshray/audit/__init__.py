"""Audit any Kubernetes manifests for drift between RayClusters and the Istio objects around them.

Independent of the chart: it reads plain YAML objects (``meshray.manifests``) and models Ray,
KubeRay and Services itself (``meshray.raymodel``, ``meshray.services``), so it judges
hand-written manifests, other charts and this chart's renders alike.

Layout: one module per family of checks, each declaring its checks (id, severity, what it
catches) next to the code that reports them: ``cluster`` (a RayCluster's ports and its
headless Service), ``protocols`` (one protocol per pod port across Services and Sidecars),
``nodeip``, ``versions``, ``peerauth``, ``authz`` (AuthorizationPolicies, NetworkPolicies),
``netpolicy`` (a RayCluster's own KubeRay 1.7 ``spec.networkPolicy`` against its sidecars),
``identity`` (the Ray identity a policy admits, shared with other workloads), ``ingress``,
``gatewayapi`` (Gateway API routes), ``ambient`` (ambient enrolment, waypoints), ``capture``
(Istio labels and annotations that switch the mesh off around Ray pods), ``pods`` (running
Pods, read by ``--cluster``), ``restricted`` (Ray pods beyond the restricted Pod Security
Standard), ``rayjob`` (a RayJob's generated cluster, the cluster it runs on, its submitter),
``inputs`` (duplicates, objects without a name). A RayJob's cluster is audited by every family
like a RayCluster, its findings reported on the RayJob.
``registry`` assembles them, the kinds each reads and the run order, ``engine`` sorts the input
and runs them.

Imports run one way: a family imports only the ground modules below and the model outside
the audit, never another family; what two families share lives in the ground. Ground:
``context`` (one run's state), ``findings`` (what a finding is, the text and JSON formats),
``kinds`` (the kinds of object the audit reads, and the workloads' pod specs and accounts),
``raypods`` (each Ray pod template and running Ray Pod, Istio's pod keys), ``acknowledge``
(the risks a RayCluster acknowledges, ``meshray.io/acknowledged``), ``policies`` (how Istio
reads an AuthorizationPolicy, which ports Ray needs) and ``backends`` (what an Ingress's or a
route's backend reaches). Callers use only the names below.
"""

from .engine import audit
from .findings import (
    ERROR,
    INFO,
    SEVERITIES,
    WARNING,
    Check,
    Finding,
    at_least,
    counts,
    summary,
    to_json,
)
from .kinds import is_ray_pod, is_workload, pod_specs, service_account
from .registry import CHECKS

__all__ = ["CHECKS", "ERROR", "INFO", "SEVERITIES", "WARNING", "Check", "Finding", "at_least",
           "audit", "counts", "is_ray_pod", "is_workload", "pod_specs", "service_account",
           "summary", "to_json"]
