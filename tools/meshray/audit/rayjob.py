"""RayJobs: the cluster KubeRay creates for them, the cluster they run on, and their submitter.

What the checks rely on was read from the KubeRay operator's source (v1.1.0, v1.6.2, v1.7.0):

* A RayJob with ``spec.rayClusterSpec`` runs on a RayCluster the operator creates from a copy
  of that spec and names ``<rayjob>-<5 random>`` (``<rayjob>-raycluster-<5 random>`` before
  v1.4). Its Pods carry the pod templates' labels plus the operator's (``ray.io/cluster`` with
  that generated name, ``ray.io/node-type``, ``ray.io/group``...); the RayJob's own labels do
  not reach them. So the cluster is audited like a RayCluster (every per-cluster and pod-level
  family), findings name the RayJob, and a Service or policy selecting ``ray.io/cluster:
  <rayjob>`` selects none of its Pods. Read from a running cluster, the RayCluster the RayJob
  controls (``ownerReferences``) gives the real name and spec: it is audited once, as the
  RayJob's.
* ``spec.clusterSelector`` names an existing RayCluster by its ``ray.io/cluster`` key (a GET by
  name in the RayJob's namespace; other keys are ignored): it must exist.
* The operator reads the head Service port named ``dashboard`` to build the job's dashboard
  URL; without one the RayJob stays Initializing.
* K8sJobMode (the default ``submissionMode``): a Kubernetes Job runs ``ray job submit`` against
  the head's dashboard port (the Jobs API), from ``spec.submitterPodTemplate`` kept as written
  (KubeRay only fills the first container's command and env); without one, a default Pod
  that names no ServiceAccount and has no labels or annotations. A Job's Pod needs
  ``restartPolicy`` Never or OnFailure (the operator does not default it for a given
  template). In a sidecar mesh the submitter's istio-proxy keeps the Job's Pod running after
  the submitter exits unless it runs as a native sidecar (``sidecar.istio.io/nativeSidecar:
  "true"``, istio#11045), and under an ALLOW AuthorizationPolicy on the head the submitter's
  principal (``<trust domain>/ns/<namespace>/sa/<ServiceAccount>``) must be admitted to the
  dashboard port, and to nothing else: it needs the Jobs API only.

Whether the submitter gets a sidecar: its template's ``sidecar.istio.io/inject`` label (or the
deprecated annotation) decides; else a Namespace object in the input (``istio-injection:
enabled``/``disabled``, ``istio.io/rev``); else it is unknown, and reported as a warning when
the job's Ray pods run with a sidecar (``raypods.sidecar_asks``).

``audit --cluster`` gives objects a source starting with ``cluster:`` (``live.read_objects``):
a clusterSelector naming a RayCluster that is not there is then an error, not a warning.
"""

from __future__ import annotations

from typing import Any

from ..manifests import Manifest
from ..raymodel import Cluster, Group, compress, rayjob_cluster_from
from .context import Context
from .findings import ERROR, WARNING, Check
from .kinds import (
    AUTHORIZATION_POLICY,
    CLUSTERS,
    DEFAULT_SERVICE_ACCOUNT,
    NAMESPACE,
    NETWORK_POLICY,
    PEER_AUTHENTICATION,
    SERVICE,
    SIDECAR,
    service_account,
)
from .policies import (
    Policy,
    admitting_ports,
    allow_policies,
    any_source,
    l4_ports,
    names_principal,
    ray_ports,
    user_ports,
)
from .raypods import DATAPLANE, as_dict, as_list, sidecar_asks, strings

RAYJOB_SELECTS_JOB_NAME = Check(
    "rayjob-selects-job-name", ERROR,
    "a Service or policy selects ray.io/cluster: the RayJob's name, which none of its Pods "
    "carry")
RAYJOB_NO_CLUSTER = Check(
    "rayjob-no-cluster", ERROR, "a RayJob with neither rayClusterSpec nor clusterSelector "
    "ray.io/cluster")
RAYJOB_CLUSTER_NOT_FOUND = Check(
    "rayjob-cluster-not-found", WARNING,
    "the RayCluster a RayJob's clusterSelector names is not in the input (--cluster: error)")
RAYJOB_DASHBOARD_PORT_MISSING = Check(
    "rayjob-dashboard-port-missing", ERROR,
    "the job's head Service has no port named dashboard: the RayJob never leaves Initializing")
RAYJOB_SUBMITTER_TEMPLATE_MISSING = Check(
    "rayjob-submitter-template-missing", ERROR,
    "K8sJobMode without submitterPodTemplate: KubeRay's submitter runs as default, no native "
    "sidecar")
RAYJOB_SUBMITTER_DEFAULT_SA = Check(
    "rayjob-submitter-default-service-account", WARNING,
    "the submitter names no ServiceAccount (error if a policy admits default to the Jobs API)")
RAYJOB_SUBMITTER_RAY_IDENTITY = Check(
    "rayjob-submitter-ray-identity", ERROR,
    "the submitter runs as a ServiceAccount of the Ray pods (admitted to GCS and raylets)")
RAYJOB_SUBMITTER_RESTART_POLICY = Check(
    "rayjob-submitter-restart-policy", ERROR,
    "the submitter's restartPolicy is not Never or OnFailure: the API server rejects its Job")
RAYJOB_SUBMITTER_NATIVE_SIDECAR = Check(
    "rayjob-submitter-native-sidecar", ERROR,
    "a sidecar-injected submitter without nativeSidecar: its Job never completes (unknown "
    "injection: warning)")
RAYJOB_SUBMITTER_DENIED = Check(
    "rayjob-submitter-denied", ERROR,
    "ALLOW policies on the head do not admit the submitter's principal to the dashboard port")
RAYJOB_SUBMITTER_BEYOND_DASHBOARD = Check(
    "rayjob-submitter-beyond-dashboard", ERROR,
    "a policy admits the submitter's principal to Ray ports other than the dashboard")

CHECKS = (RAYJOB_SELECTS_JOB_NAME, RAYJOB_NO_CLUSTER, RAYJOB_CLUSTER_NOT_FOUND,
          RAYJOB_DASHBOARD_PORT_MISSING, RAYJOB_SUBMITTER_TEMPLATE_MISSING,
          RAYJOB_SUBMITTER_DEFAULT_SA, RAYJOB_SUBMITTER_RAY_IDENTITY,
          RAYJOB_SUBMITTER_RESTART_POLICY, RAYJOB_SUBMITTER_NATIVE_SIDECAR,
          RAYJOB_SUBMITTER_DENIED, RAYJOB_SUBMITTER_BEYOND_DASHBOARD)
# RayJobs and the clusters they run on; the objects whose selectors may name a RayJob; the
# policies and Services the submitter passes; Namespaces, whose labels decide its injection
READS = (*CLUSTERS, SERVICE, SIDECAR, NETWORK_POLICY, AUTHORIZATION_POLICY, PEER_AUTHENTICATION,
         NAMESPACE)

CLUSTER_KEY = "ray.io/cluster"  # the only clusterSelector key KubeRay reads, and the Pods' label
K8S_JOB_MODE = "K8sJobMode"  # the CRD's default submissionMode
JOB_RESTART_POLICIES = ("Never", "OnFailure")  # what the API server accepts in a Job
NATIVE_SIDECAR = "sidecar.istio.io/nativeSidecar"
INJECT = "sidecar.istio.io/inject"
NS_INJECTION = "istio-injection"  # a Namespace label: enabled / disabled
NS_REVISION = "istio.io/rev"  # a Namespace label: a revision's injector
LIVE_SOURCE = "cluster:"  # how live.read_objects marks the objects it read
DASHBOARD_NAME = "dashboard"  # the head Service port name the operator reads
DEFAULT_DASHBOARD_PORT = 8265
TPL = "spec.submitterPodTemplate"


# ------------------------------------------------------------------------ the job's cluster


def _owner_job(rc: Manifest) -> tuple[str, str] | None:
    """(name, uid) of the RayJob controlling a RayCluster (the operator's ownerReference)."""
    for ref in as_list(as_dict(rc.obj.get("metadata")).get("ownerReferences")):
        ref = as_dict(ref)
        if (ref.get("kind") == "RayJob" and str(ref.get("apiVersion", "")).startswith("ray.io/")
                and ref.get("controller") is True):
            return str(ref.get("name") or ""), str(ref.get("uid") or "")
    return None


def _uid(m: Manifest) -> str:
    return str(as_dict(m.obj.get("metadata")).get("uid") or "")


def add_clusters(ctx: Context) -> None:
    """Each RayJob's cluster into ``ctx.clusters``, reported on the RayJob: the RayCluster it
    controls when that was read (in its place, so it is audited once), else its
    ``rayClusterSpec`` under a name no selector can match."""
    for job in ctx.rayjobs:
        ns = job.namespace(ctx.namespace)
        at = next((i for i, (c, rc) in enumerate(ctx.clusters)
                   if not c.job and rc.kind == "RayCluster" and c.namespace == ns
                   and _controlled_by(rc, job)), None)
        if at is not None:
            live = rayjob_cluster_from(job.obj, ns, ctx.clusters[at][1].obj)
            assert live is not None
            ctx.clusters[at] = (live, job)
            continue
        c = rayjob_cluster_from(job.obj, ns)
        if c is not None:
            ctx.clusters.append((c, job))


def _controlled_by(rc: Manifest, job: Manifest) -> bool:
    owner = _owner_job(rc)
    if owner is None:
        return False
    name, uid = owner
    return uid == _uid(job) if uid and _uid(job) else name == job.name


def _spec(job: Manifest) -> dict[str, Any]:
    return as_dict(job.obj.get("spec"))


def _own(ctx: Context, job: Manifest) -> Cluster | None:
    return next((c for c, m in ctx.clusters if m is job), None)


def _selected_name(job: Manifest) -> str:
    return str(as_dict(_spec(job).get("clusterSelector")).get(CLUSTER_KEY) or "")


def _target(ctx: Context, job: Manifest) -> tuple[Cluster, Manifest] | None:
    """The cluster the RayJob runs on, when it is in the input: its own, or the RayCluster
    its clusterSelector names (in the RayJob's namespace)."""
    own = next(((c, m) for c, m in ctx.clusters if m is job), None)
    if own is not None:
        return own
    name, ns = _selected_name(job), job.namespace(ctx.namespace)
    return next(((c, m) for c, m in ctx.clusters if name and c.name_known and c.name == name
                 and c.namespace == ns), None)


def check(ctx: Context) -> None:
    for job in ctx.rayjobs:
        own = _own(ctx, job)
        if own is not None:
            _check_selects_job_name(ctx, job, own)
        else:
            _check_selector(ctx, job)
        target = _target(ctx, job)
        if target is not None:
            _check_dashboard_port(ctx, job, *target)
        if str(_spec(job).get("submissionMode") or K8S_JOB_MODE) == K8S_JOB_MODE:
            Submitter(ctx, job, target).check()


def _check_selector(ctx: Context, job: Manifest) -> None:
    """rayjob-no-cluster, rayjob-cluster-not-found."""
    spec = _spec(job)
    name = _selected_name(job)
    if not name:
        given = spec.get("clusterSelector")
        ctx.add(RAYJOB_NO_CLUSTER, job, "spec.clusterSelector" if given else "spec", given,
                f"RayJob/{job.name} has no rayClusterSpec and no clusterSelector "
                f"{CLUSTER_KEY}: the operator has no cluster to run it on (v1.6+: "
                "ValidationFailed)",
                f"set spec.rayClusterSpec, or spec.clusterSelector.{CLUSTER_KEY}: <an existing "
                "RayCluster in the same namespace>")
        return
    if _target(ctx, job) is not None:
        return
    ns = job.namespace(ctx.namespace)
    live = job.source.startswith(LIVE_SOURCE)
    why = ("there is none in the namespace: the operator requeues the RayJob until one exists "
           "(v1.6+: event RayClusterNotFound)" if live else
           "it is not in the input, so its Services and policies cannot be checked against "
           "the job (it may be deployed separately)")
    ctx.add(RAYJOB_CLUSTER_NOT_FOUND, job, f"spec.clusterSelector.{CLUSTER_KEY}", name,
            f"RayJob/{job.name} runs on RayCluster {name} of namespace {ns}, but {why}",
            "create the RayCluster (KubeRay looks it up by name in the RayJob's namespace)"
            if live else f"audit RayCluster {name}'s manifests together with the RayJob",
            severity=ERROR if live else None)


def _selector_labels(m: Manifest) -> list[tuple[str, dict[str, str]]]:
    """(key, labels) of the selectors an object picks pods with (Services, Istio policies and
    Sidecars, NetworkPolicies and their ingress peers)."""
    spec = as_dict(m.obj.get("spec"))
    if m.kind == "Service":
        return [("spec.selector", strings(spec.get("selector")))]
    if m.kind == "Sidecar":
        return [("spec.workloadSelector.labels",
                 strings(as_dict(spec.get("workloadSelector")).get("labels")))]
    if m.kind in {"AuthorizationPolicy", "PeerAuthentication"}:
        return [("spec.selector.matchLabels",
                 strings(as_dict(spec.get("selector")).get("matchLabels")))]
    out = [("spec.podSelector", _label_selector(spec.get("podSelector")))]
    for i, rule in enumerate(as_list(spec.get("ingress"))):
        for k, peer in enumerate(as_list(as_dict(rule).get("from"))):
            sel = as_dict(peer).get("podSelector")
            if sel is not None:
                out.append((f"spec.ingress[{i}].from[{k}].podSelector", _label_selector(sel)))
    return out


def _label_selector(selector: Any) -> dict[str, str]:
    """The labels a LabelSelector requires: matchLabels and single-value ``In`` expressions."""
    sel = as_dict(selector)
    out = strings(sel.get("matchLabels"))
    for e in as_list(sel.get("matchExpressions")):
        e = as_dict(e)
        values = as_list(e.get("values"))
        if e.get("operator") == "In" and len(values) == 1:
            out[str(e.get("key"))] = str(values[0])
    return out


def _check_selects_job_name(ctx: Context, job: Manifest, c: Cluster) -> None:
    """rayjob-selects-job-name: ``ray.io/cluster: <rayjob>`` in a selector near the job."""
    ns = c.namespace
    if any(oc.name_known and not oc.job and oc.name == job.name and oc.namespace == ns
           for oc, _ in ctx.clusters):
        return  # a RayCluster of that name exists: the selector may be for it
    objs = [s.manifest for s in ctx.services] + ctx.sidecars + ctx.netpols
    objs += ctx.authz + ctx.peerauths
    mesh_wide = {"AuthorizationPolicy", "PeerAuthentication"}
    generated = (f"KubeRay names the job's RayCluster {job.name}-<5 random> "
                 f"({job.name}-raycluster-<5 random> before v1.4)")
    if c.name_known:
        generated = f"the job's RayCluster is {c.name}"
    for m in objs:
        where = m.namespace(ctx.namespace)
        if where != ns and not (m.kind in mesh_wide and where == ctx.root_namespace):
            continue
        for key, labels in _selector_labels(m):
            if labels.get(CLUSTER_KEY) != job.name:
                continue
            ctx.add(RAYJOB_SELECTS_JOB_NAME, m, f"{key}.{CLUSTER_KEY}", job.name,
                    f"selects {CLUSTER_KEY}: {job.name}, the name of RayJob/{job.name}, but "
                    f"{generated} and its Pods carry that name: this {m.kind} selects none of "
                    "the job's Pods",
                    f"select a label of the RayJob's pod templates instead, which KubeRay "
                    f"copies to its Pods: {c.selector_hint()}")


def _check_dashboard_port(ctx: Context, job: Manifest, c: Cluster, cm: Manifest) -> None:
    """rayjob-dashboard-port-missing: the operator reads the head Service port ``dashboard``."""
    head = c.head
    ports = c.head_service_ports()
    if head is None or any(name == DASHBOARD_NAME for name, _ in ports):
        return
    mine = cm is job
    key = (f"{head.path}.template.spec.containers[0].ports" if mine
           else f"spec.clusterSelector.{CLUSTER_KEY}")
    listed = ", ".join(f"{n or '(unnamed)'}:{p}" for n, p in ports)
    ctx.add(RAYJOB_DASHBOARD_PORT_MISSING, job, key, listed,
            f"RayJob/{job.name}: the head Service KubeRay builds for "
            f"{'its cluster' if mine else c.ref} has no port named {DASHBOARD_NAME} "
            f"({listed}), so the operator cannot build the job's dashboard URL: the RayJob "
            "stays Initializing and the job is never submitted",
            f"name the head's dashboard port {DASHBOARD_NAME} (a headGroupSpec.headService "
            "port, or a head container port)")


# ------------------------------------------------------------------------------ submitter


def dashboard_port(head: Group) -> int:
    """The head's dashboard (Jobs API) port: dashboard-port, default 8265."""
    return next((u.port for u in head.ports if u.name == "dashboard-port"),
                DEFAULT_DASHBOARD_PORT)


class Submitter:
    """The submitter Pod of one K8sJobMode RayJob, and what it needs from its cluster."""

    def __init__(self, ctx: Context, job: Manifest,
                 target: tuple[Cluster, Manifest] | None) -> None:
        self.ctx, self.job, self.target = ctx, job, target
        self.template = as_dict(_spec(job).get("submitterPodTemplate"))
        self.given = isinstance(_spec(job).get("submitterPodTemplate"), dict)
        self.pod = as_dict(self.template.get("spec"))
        self.sa = service_account(self.pod)
        self.ns = job.namespace(ctx.namespace)
        meta = as_dict(self.template.get("metadata"))
        self.labels = strings(meta.get("labels"))
        self.annotations = strings(meta.get("annotations"))

    @property
    def who(self) -> str:
        return f"RayJob/{self.job.name}'s submitter"

    @property
    def sa_key(self) -> str:
        return f"{TPL}.spec.serviceAccountName" if self.given else TPL

    def principal(self, trust_domain: str = "cluster.local") -> str:
        return f"{trust_domain}/ns/{self.ns}/sa/{self.sa}"

    def check(self) -> None:
        if not self.given:
            self._report_template()
        else:
            self._check_restart_policy()
            self._check_native_sidecar()
        ray_sas = ({service_account(g.template.get("spec")) for g in self.target[0].groups}
                   if self.target else set())
        if self.sa == DEFAULT_SERVICE_ACCOUNT and self.given:
            self._report_default()
        elif self.sa in ray_sas and self.sa != DEFAULT_SERVICE_ACCOUNT:
            self._report_ray_identity()
        if self.target is not None and self.given:
            self._check_denied(*self.target)
            if self.sa not in ray_sas:
                self._check_beyond_dashboard(*self.target)

    def _report_template(self) -> None:
        self.ctx.add(RAYJOB_SUBMITTER_TEMPLATE_MISSING, self.job, TPL, None,
                     f"RayJob/{self.job.name} runs in K8sJobMode (submissionMode "
                     f"{_spec(self.job).get('submissionMode') or 'unset: the default'}) without "
                     "a submitterPodTemplate: KubeRay's default submitter Pod names no "
                     "ServiceAccount (it runs as the namespace's default, which the head's "
                     "policy would have to admit to the Jobs API) and has no labels or "
                     "annotations (in a sidecar mesh: no native sidecar, so its Job never "
                     "completes, istio#11045)",
                     "give the RayJob a submitterPodTemplate with its own serviceAccountName, "
                     "restartPolicy: Never, and the sidecar.istio.io/inject label and "
                     f'{NATIVE_SIDECAR}: "true" annotation of the mesh')

    def _check_restart_policy(self) -> None:
        policy = self.pod.get("restartPolicy")
        if policy in JOB_RESTART_POLICIES:
            return
        self.ctx.add(RAYJOB_SUBMITTER_RESTART_POLICY, self.job, f"{TPL}.spec.restartPolicy",
                     policy,
                     f"{self.who}: a Job's Pod template needs restartPolicy Never or OnFailure "
                     f"({'unset' if policy is None else policy}), and KubeRay does not default "
                     "it for a given template: the API server rejects the submitter Job",
                     "set restartPolicy: Never")

    def _injection(self) -> bool | None:
        """Whether the submitter gets an istio-proxy sidecar: True, False, None (unknown)."""
        if self.labels.get(DATAPLANE) == "ambient":
            return False  # ambient: ztunnel, no sidecar
        inject = self.labels.get(INJECT, self.annotations.get(INJECT))
        if inject is not None:
            return inject.lower() == "true"
        ns = next((m for m in self.ctx.namespaces if m.name == self.ns), None)
        if ns is None:
            return None
        labels = strings(as_dict(ns.obj.get("metadata")).get("labels"))
        if NS_INJECTION in labels:
            return labels[NS_INJECTION] == "enabled"
        return NS_REVISION in labels

    def _ray_pods_sidecar(self) -> bool:
        """The Ray pods of the job's cluster ask for a sidecar (a sidecar mesh)."""
        if self.target is None:
            return False
        return any(sidecar_asks(
            strings(as_dict(g.template.get("metadata")).get("labels")),
            strings(as_dict(g.template.get("metadata")).get("annotations")))
            for g in self.target[0].groups)

    def _check_native_sidecar(self) -> None:
        value = self.annotations.get(NATIVE_SIDECAR)
        if str(value).lower() == "true":
            return
        injected = self._injection()
        key = f"{TPL}.metadata.annotations.{NATIVE_SIDECAR}"
        stuck = ("its istio-proxy keeps running after the submitter exits, so the Job's Pod "
                 "never completes and the RayJob never finishes (istio#11045)")
        fix = f'annotate the submitter Pod template {NATIVE_SIDECAR}: "true"'
        if injected:
            self.ctx.add(RAYJOB_SUBMITTER_NATIVE_SIDECAR, self.job, key, value,
                         f"{self.who} is sidecar-injected without {NATIVE_SIDECAR}: {stuck}",
                         fix)
        elif injected is None and self._ray_pods_sidecar():
            self.ctx.add(RAYJOB_SUBMITTER_NATIVE_SIDECAR, self.job, key, value,
                         f"{self.who} sets no {INJECT} while the job's Ray pods run with a "
                         f"sidecar: if namespace {self.ns} injects sidecars, {stuck}; if it "
                         "does not, the submitter runs outside the mesh and STRICT mTLS on the "
                         "head refuses it",
                         f'label the submitter Pod template {INJECT}: "true" and annotate it '
                         f'{NATIVE_SIDECAR}: "true"', severity=WARNING)

    def _report_default(self) -> None:
        admitted = self._admitting_dashboard()
        self.ctx.add(RAYJOB_SUBMITTER_DEFAULT_SA, self.job, self.sa_key, self.sa,
                     f"{self.who} names no ServiceAccount, so it runs as namespace {self.ns}'s "
                     "default"
                     + (f", and AuthorizationPolicy {', '.join(admitted)} admits that principal "
                        "to the Jobs API: every Pod of the namespace that names no other "
                        "ServiceAccount can submit jobs (run code on the cluster)" if admitted
                        else ": admitting it to the Jobs API would admit every such Pod of the "
                        "namespace"),
                     "give the submitter a ServiceAccount of its own (serviceAccountName) and "
                     "admit only that principal to the dashboard port",
                     severity=ERROR if admitted else None)

    def _report_ray_identity(self) -> None:
        assert self.target is not None
        c = self.target[0]
        self.ctx.add(RAYJOB_SUBMITTER_RAY_IDENTITY, self.job, self.sa_key, self.sa,
                     f"{self.who} runs as ServiceAccount {self.sa}, which the Ray pods of "
                     f"{c.ref} run as: the submitter (and anything it runs) gets the Ray "
                     "identity, which the cluster's policy admits to the GCS and raylets, "
                     "where a caller runs code on the cluster; it needs the Jobs API only",
                     "give the submitter a ServiceAccount of its own and admit that principal "
                     "to the dashboard port only")

    def _head_policies(self, c: Cluster) -> tuple[Group, list[Policy], set[int]] | None:
        head = c.head
        if head is None:
            return None
        allow = allow_policies(self.ctx, c, head)
        return head, allow, l4_ports(self.ctx, c, head)

    def _admitting_dashboard(self) -> list[str]:
        """The ALLOW policies on the head that name the submitter's principal on the
        dashboard port."""
        if self.target is None:
            return []
        got = self._head_policies(self.target[0])
        if got is None:
            return []
        head, allow, tcp = got
        port = dashboard_port(head)
        return list(dict.fromkeys(
            p.manifest.name for p in allow for _, rule in p.rules()
            if names_principal(rule, self.ns, self.sa)
            and admitting_ports(rule, {port}, tcp)))

    def _trust_domain(self, policies: list[Policy]) -> str:
        """The trust domain the policies' principals use (the mesh's is not in the input)."""
        for p in policies:
            for _, rule in p.rules():
                for f in as_list(rule.get("from")):
                    for principal in as_list(as_dict(as_dict(f).get("source")).get(
                            "principals")):
                        text = str(principal)
                        if "/ns/" in text and not text.startswith("*"):
                            return text.split("/ns/", 1)[0]
        return "cluster.local"

    def _check_denied(self, c: Cluster, cm: Manifest) -> None:
        """rayjob-submitter-denied: ALLOW policies on the head, none admitting the submitter
        (by name, or as any source) to the dashboard port."""
        got = self._head_policies(c)
        if got is None:
            return
        head, allow, tcp = got
        if not allow:
            return  # no ALLOW policy: Istio admits every request
        port = dashboard_port(head)
        for p in allow:
            for _, rule in p.rules():
                if admitting_ports(rule, {port}, tcp) and (
                        any_source(rule) or names_principal(rule, self.ns, self.sa)):
                    return
        principal = self.principal(self._trust_domain(allow))
        names = ", ".join(p.manifest.name for p in allow)
        on = "its cluster's head" if cm is self.job else f"the head of {c.ref}"
        self.ctx.add(RAYJOB_SUBMITTER_DENIED, self.job, self.sa_key, principal,
                     f"{self.who} runs as {principal}, but the ALLOW policies on {on} "
                     f"({names}) admit no rule for it on the dashboard port {port}: Istio "
                     "denies `ray job submit` (RBAC: access denied) and the submitter Job "
                     "fails",
                     f"add a rule to AuthorizationPolicy {allow[0].manifest.name}: from "
                     f"principals [{principal}] to ports [\"{port}\"]"
                     + ("" if cm is self.job else " (the cluster's release: "
                        "mesh.authorizationPolicy.dashboardPrincipals)"))

    def _check_beyond_dashboard(self, c: Cluster, cm: Manifest) -> None:
        """rayjob-submitter-beyond-dashboard: a rule naming the submitter's principal admits it
        to Ray ports other than the head's dashboard (GCS, raylets, Ray Client...)."""
        hits: dict[tuple[int, int], tuple[Policy, set[int], list[str]]] = {}
        for g in c.groups:
            tcp = l4_ports(self.ctx, c, g)
            ports = {**ray_ports(g), **user_ports(g)}
            if g.is_head:
                ports.pop(dashboard_port(g), None)
            for p in allow_policies(self.ctx, c, g):
                for i, rule in p.rules():
                    if not names_principal(rule, self.ns, self.sa):
                        continue
                    hit = admitting_ports(rule, set(ports), tcp)
                    if hit:
                        entry = hits.setdefault((id(p.manifest), i), (p, set(), []))
                        entry[1].update(hit)
                        entry[2].append(g.name)
        for (_, i), (p, ports_hit, groups) in hits.items():
            self.ctx.add(RAYJOB_SUBMITTER_BEYOND_DASHBOARD, p.manifest, f"spec.rules[{i}]",
                         compress(sorted(ports_hit)),
                         f"admits {self.who} ({self.principal(self._trust_domain([p]))}) to "
                         f"Ray ports of {c.ref} other than the dashboard (groups: "
                         f"{', '.join(dict.fromkeys(groups))}): it needs the Jobs API only, "
                         "and a caller of the GCS, raylets or Ray Client runs code on the "
                         "cluster",
                         "admit the submitter's principal with `to: [operation: {ports: "
                         "[<dashboard port>]}]` only")
