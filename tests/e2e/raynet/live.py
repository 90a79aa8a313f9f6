"""The real systems as the source: a local control plane, the chart installed with helm, the
KubeRay operator's Pods, and the live Services and EndpointSlices.

``LocalCluster`` starts etcd, kube-apiserver, kube-controller-manager and the KubeRay operator
(tools/controlplane/controlplane.py) and plays kubelet (tools/controlplane/kubelet.py) for the
Pods the operator creates: the head Pod gets the head namespace's address, the first worker
Pod it sees gets the worker namespace's address, both are marked Running and Ready through the
status subresource, so the EndpointSlice controller publishes real EndpointSlices. Other worker
Pods stay unscheduled (the harness has one worker namespace).

``read_cluster`` then reads what a node needs from the API server: each played Pod's Ray
container command and args, its env resolved the way the kubelet would (downward API with the
pod IP given above, Secret and ConfigMap refs read back), its init containers and volumes, and
the ports of every Service whose EndpointSlice lists that Pod (what the node's firewall admits).
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .netns import HEAD_IP, WORKER_IP

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools" / "controlplane"))
# The kubelet's env rules ($(VAR) expansion, downward API, Secret/ConfigMap refs) as the cluster
# suite's oracle implements them from the API server's objects.
sys.path.insert(0, str(REPO / "tests" / "cluster"))

CHART = REPO / "charts" / "meshray"
HELM = os.environ.get("MESHRAY_HELM") or str(REPO / "bin" / "helm")
OPERATOR = os.environ.get("MESHRAY_E2E_OPERATOR", "v1.6.2")
DOMAIN = "cluster.local"  # the kubelet's default --cluster-domain (the chart's default too)
RELEASE = "meshray"


class DeployError(Exception):
    """helm install / apply failed, or the operator's Pods never became playable."""


@dataclass(frozen=True)
class Deployment:
    """What one test runs against: a namespace with the chart installed by helm (values files,
    --set, --set-string), or with manifests created as they are (``manifests``). ``prepare``:
    objects created in the namespace first, as a values example tells the user to (the
    RayJob's ConfigMap with its script)."""

    namespace: str
    values: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    string_sets: tuple[str, ...] = ()
    manifests: Callable[[LocalCluster], list[dict[str, Any]]] | None = field(
        default=None, compare=False
    )
    prepare: Callable[[], list[dict[str, Any]]] | None = field(default=None, compare=False)


# ---- what a node is started from ------------------------------------------------------------
@dataclass(frozen=True)
class Volume:
    kind: str  # emptyDir | secret | configMap | other
    files: dict[str, str] = field(default_factory=dict)  # secret / configMap content


@dataclass(frozen=True)
class InitContainer:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str]


@dataclass(frozen=True)
class LivePod:
    role: str  # head | worker
    name: str
    ip: str
    container: str
    argv: tuple[str, ...]  # the Ray container's command + args, $(VAR) expanded
    env: dict[str, str]  # the container's env, resolved
    init_containers: tuple[InitContainer, ...]
    mounts: dict[str, Volume]  # mount path -> volume (Ray and init containers)
    allowed: dict[int, str]  # port -> "service/port-name" of every Service listing this Pod
    fqdns: tuple[str, ...]  # this Pod's FQDN under each headless Service listing it
    other_containers: tuple[str, ...] = ()  # sidecars the harness does not run


@dataclass(frozen=True)
class LiveCluster:
    source: str
    namespace: str
    cluster_name: str
    head: LivePod
    worker: LivePod
    hosts: dict[str, tuple[str, ...]]  # what the cluster DNS answers: name -> addresses
    unplayed_workers: tuple[str, ...] = ()

    def pod(self, role: str) -> LivePod:
        return self.head if role == "head" else self.worker


# ---- the control plane ------------------------------------------------------------------------
def _node_ip(pod: Any) -> str:
    return HEAD_IP if (pod.metadata.labels or {}).get("ray.io/node-type") == "head" else WORKER_IP


class WorkerClaims:
    """The kubelet's `only`: every head Pod, and per namespace the first worker Pod seen."""

    def __init__(self) -> None:
        self.claimed: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, pod: Any) -> bool:
        labels = pod.metadata.labels or {}
        if labels.get("ray.io/is-ray-node") != "yes":
            return False
        if labels.get("ray.io/node-type") == "head":
            return True
        ns, name = pod.metadata.namespace, pod.metadata.name
        with self._lock:
            return self.claimed.setdefault(ns, name) == name


class LocalCluster:
    """One control plane with the real operator for the whole e2e session."""

    def __init__(self, workdir: Path) -> None:
        from controlplane import with_operator

        # The operator resolves through its own hosts file (RayJob: it polls the head's
        # dashboard by its Service name); until a run writes names into it, it is this
        # machine's /etc/hosts.
        self.operator_hosts = workdir / "operator-hosts"
        self.cp = with_operator(workdir, OPERATOR, operator_hosts=self.operator_hosts)
        self.claims = WorkerClaims()
        self.kubelet: Any = None
        self.api: Any = None
        self.seconds = 0.0
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="deploy")
        self._deploys: dict[str, cf.Future[float]] = {}
        self._ca: dict[str, str] | None = None
        # time.monotonic() when each namespace's install began (a RayJob's wall time).
        self.installed_at: dict[str, float] = {}
        self._hosts_lock = threading.Lock()

    def start(self) -> LocalCluster:
        t0 = time.monotonic()
        self.cp.start(timeout=180)
        self.api = self.cp.api_client()
        self.seconds = round(time.monotonic() - t0, 1)
        return self

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.cp.stop()

    # -- deployments (installed in the background, in the order the tests will need them) ----
    def submit(self, dep: Deployment) -> None:
        if dep.namespace not in self._deploys:
            self._deploys[dep.namespace] = self._pool.submit(self._deploy, dep)

    def read(self, dep: Deployment, label: str) -> LiveCluster:
        """The deployment's Pods, env, Services and EndpointSlices as the API server holds them
        (installed first if no test asked for it before)."""
        self.wait(dep)
        return read_cluster(self.api, dep.namespace, source=label)

    def timings(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {}
        for ns, fut in self._deploys.items():
            if fut.done() and not fut.cancelled():
                exc = fut.exception()
                out[ns] = f"failed: {exc}"[:200] if exc else fut.result()
        return out

    def wait(self, dep: Deployment, timeout: float = 300) -> float:
        """Seconds the deployment took (install until Pods Ready and in EndpointSlices)."""
        self.submit(dep)
        return self._deploys[dep.namespace].result(timeout=timeout)

    def _deploy(self, dep: Deployment) -> float:
        """Install, and play kubelet for the namespace's Pods until the head and one worker
        are Running and Ready in every EndpointSlice that selects them. The kubelet stand-in
        runs only meanwhile: while Ray runs, nothing polls the API server."""
        from kubelet import Kubelet

        t0 = time.monotonic()
        ns = dep.namespace
        self.installed_at[ns] = t0
        self.kubelet = Kubelet(
            self.api,
            ip_for=_node_ip,
            only=lambda pod: pod.metadata.namespace == ns and self.claims(pod),
            interval=0.2,
        ).start()
        try:
            if dep.prepare is not None:
                self.apply(ns, dep.prepare())
            if dep.manifests is not None:
                self.apply(ns, dep.manifests(self))
            else:
                self.helm_install(ns, dep.values, dep.sets, dep.string_sets)
            self.wait_played(ns)
        finally:
            self.kubelet.stop()
        create_missing_secrets(self.api, dep.namespace, self.test_ca())
        return round(time.monotonic() - t0, 1)

    def operator_resolves(self, names: dict[str, tuple[str, ...]] | None) -> None:
        """What the operator's /etc/hosts answers besides this machine's own entries: the
        cluster DNS's names of a run (None: none). Written in place, so the operator's bind
        mount sees it (Go's resolver re-reads /etc/hosts when it changes, within 5 s)."""
        lines = Path("/etc/hosts").read_text().splitlines()
        for name, ips in (names or {}).items():
            lines += [f"{ip} {name}" for ip in ips]
        with self._hosts_lock, open(self.operator_hosts, "w") as f:
            f.write("\n".join(lines) + "\n")

    def helm_values(self, namespace: str) -> dict[str, Any]:
        """The release's computed values (`helm get values --all`)."""
        import json

        out = self._helm([HELM, "get", "values", RELEASE, "-n", namespace, "--all", "-o", "json"])
        return dict(json.loads(out))

    def test_ca(self) -> dict[str, str]:
        """A throwaway CA standing in for the one a values example tells the user to create
        (ca.crt/ca.key, also as tls.crt/tls.key)."""
        if self._ca is None:
            d = self.cp.workdir / "test-ca"
            d.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                    *("-subj", "/CN=meshray-e2e-ca", "-keyout", f"{d}/ca.key"),
                    *("-out", f"{d}/ca.crt", "-addext", "basicConstraints=critical,CA:TRUE"),
                    *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )
            crt, key = (d / "ca.crt").read_text(), (d / "ca.key").read_text()
            self._ca = {"ca.crt": crt, "ca.key": key, "tls.crt": crt, "tls.key": key}
        return self._ca

    def helm_install(
        self, namespace: str, values: Iterable[str], sets: Iterable[str], string_sets: Iterable[str]
    ) -> None:
        args = [HELM, "install", RELEASE, str(CHART), "-n", namespace, "--create-namespace"]
        for v in values:
            args += ["-f", v]
        for s in sets:
            args += ["--set", s]
        for s in string_sets:
            args += ["--set-string", s]
        self._helm(args)

    def helm_template(self, namespace: str, string_sets: Iterable[str]) -> list[dict[str, Any]]:
        import yaml

        args = [HELM, "template", RELEASE, str(CHART), "-n", namespace]
        for s in string_sets:
            args += ["--set-string", s]
        return [d for d in yaml.safe_load_all(self._helm(args)) if d]

    def _helm(self, args: list[str]) -> str:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cp.kubeconfig),
            "HELM_CACHE_HOME": str(self.cp.workdir / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.cp.workdir / "helm" / "config"),
            "HELM_DATA_HOME": str(self.cp.workdir / "helm" / "data"),
        }
        try:
            res = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
        except subprocess.TimeoutExpired as e:
            raise DeployError(f"{' '.join(args[1:4])}: timed out after 120s") from e
        if res.returncode != 0:
            raise DeployError(f"helm {' '.join(args[1:])} failed: {res.stderr.strip()[-1500:]}")
        return res.stdout

    def apply(self, namespace: str, docs: Iterable[dict[str, Any]]) -> None:
        """Create manifests as `kubectl create -n` would (for manifests not from the chart)."""
        from kubernetes import client, dynamic
        from kubernetes.client.rest import ApiException

        core = client.CoreV1Api(self.api)
        try:
            core.create_namespace({"metadata": {"name": namespace}})
        except ApiException as e:
            if e.status != 409:
                raise
        dyn = dynamic.DynamicClient(self.api)
        for doc in docs:
            res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            ns = doc.get("metadata", {}).get("namespace") or namespace
            try:
                res.create(body=doc, namespace=ns if res.namespaced else None)
            except ApiException as e:
                raise DeployError(
                    f"create {doc['kind']} {doc['metadata']['name']}: {e.body}"
                ) from e

    def wait_played(self, namespace: str, timeout: float = 90) -> None:
        """Until the head and one worker Pod have their IPs and every EndpointSlice of the
        namespace lists them where its Service selects them."""
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        disc = client.DiscoveryV1Api(self.api)
        deadline = time.monotonic() + timeout
        last = "no Ray Pods yet"
        while time.monotonic() < deadline:
            pods = [
                p
                for p in core.list_namespaced_pod(
                    namespace, label_selector="ray.io/is-ray-node=yes"
                ).items
                if p.status.pod_ip
            ]
            roles = {(p.metadata.labels or {}).get("ray.io/node-type") for p in pods}
            if {"head", "worker"} <= roles:
                svcs = {s.metadata.name: s for s in core.list_namespaced_service(namespace).items}
                listed: dict[str, set[str]] = {}
                for sl in disc.list_namespaced_endpoint_slice(namespace).items:
                    svc = (sl.metadata.labels or {}).get("kubernetes.io/service-name", "")
                    for ep in sl.endpoints or []:
                        if ep.target_ref is not None and (ep.conditions.ready is not False):
                            listed.setdefault(svc, set()).add(ep.target_ref.name)
                missing = []
                for name, svc in svcs.items():
                    sel = svc.spec.selector or {}
                    if not sel:
                        continue
                    selected = {
                        p.metadata.name
                        for p in pods
                        if all((p.metadata.labels or {}).get(k) == v for k, v in sel.items())
                    }
                    if not selected <= listed.get(name, set()):
                        missing.append(f"{name}: {sorted(selected - listed.get(name, set()))}")
                if not missing:
                    return
                last = f"EndpointSlices do not list yet {missing}"
            else:
                last = f"played Pods: {sorted(p.metadata.name for p in pods)}"
            time.sleep(0.2)
        raise DeployError(
            f"{namespace}: after {timeout:.0f}s {last}; kubelet: {self.kubelet.errors}"
        )


# ---- reading a deployment back --------------------------------------------------------------
def _shell_words(pod: Any, container: Any, env: dict[str, str]) -> tuple[str, ...]:
    from podcmd import expand_kubelet

    words = [*(container.command or []), *(container.args or [])]
    if not words:
        raise DeployError(f"{pod.metadata.name}/{container.name}: no command (image entrypoint)")
    return tuple(expand_kubelet(w, env) for w in words)


def _volume_files(core: Any, ns: str, vol: Any) -> Volume:
    from kubernetes.client.rest import ApiException

    if vol.empty_dir is not None:
        return Volume("emptyDir")
    src, kind = (vol.secret, "secret") if vol.secret is not None else (vol.config_map, "configMap")
    if src is None:
        return Volume("other")
    name = src.secret_name if kind == "secret" else src.name
    try:
        if kind == "secret":
            raw = core.read_namespaced_secret(name, ns).data or {}
            data = {k: base64.b64decode(v).decode() for k, v in raw.items()}
        else:
            data = dict(core.read_namespaced_config_map(name, ns).data or {})
    except ApiException as e:
        if e.status == 404 and src.optional:
            return Volume(kind)
        raise DeployError(f"{kind} {name} for volume {vol.name}: {e.status} {e.reason}") from e
    if src.items:
        data = {i.path: data[i.key] for i in src.items}
    return Volume(kind, data)


def _read_pod(core: Any, pod: Any, role: str, slices: list[Any], svcs: dict[str, Any]) -> LivePod:
    from podcmd import pod_env

    ns = pod.metadata.namespace
    ray = pod.spec.containers[0]
    env = pod_env(core, pod, ray)
    volumes = {v.name: v for v in pod.spec.volumes or []}
    mounts: dict[str, Volume] = {}
    inits = []
    for c in [ray, *(pod.spec.init_containers or [])]:
        for m in c.volume_mounts or []:
            if m.mount_path.startswith("/var/run/secrets/kubernetes.io"):
                continue  # the service-account token: Ray does not use the API server
            if m.name in volumes:
                mounts[m.mount_path] = _volume_files(core, ns, volumes[m.name])
    for ic in pod.spec.init_containers or []:
        ic_env = pod_env(core, pod, ic)
        inits.append(InitContainer(ic.name, _shell_words(pod, ic, ic_env), ic_env))
    allowed: dict[int, str] = {}
    fqdns = []
    for sl in slices:
        svc = (sl.metadata.labels or {}).get("kubernetes.io/service-name", "")
        if not any(
            ep.target_ref is not None and ep.target_ref.name == pod.metadata.name
            for ep in sl.endpoints or []
        ):
            continue
        for p in sl.ports or []:
            if (p.protocol or "TCP") == "TCP" and p.port is not None:
                allowed.setdefault(int(p.port), f"{svc}/{p.name or ''}")
        if svc in svcs and svcs[svc].spec.cluster_ip == "None":
            dashed = re.sub(r"[.:]", "-", pod.status.pod_ip)
            fqdn = f"{dashed}.{svc}.{ns}.svc.{DOMAIN}"
            if fqdn not in fqdns:
                fqdns.append(fqdn)
    return LivePod(
        role=role,
        name=pod.metadata.name,
        ip=pod.status.pod_ip,
        container=ray.name,
        argv=_shell_words(pod, ray, env),
        env=env,
        init_containers=tuple(inits),
        mounts=mounts,
        allowed=dict(sorted(allowed.items())),
        fqdns=tuple(fqdns),
        other_containers=tuple(c.name for c in pod.spec.containers[1:]),
    )


def read_cluster(api: Any, namespace: str, source: str) -> LiveCluster:
    from kubernetes import client

    core = client.CoreV1Api(api)
    disc = client.DiscoveryV1Api(api)
    pods = core.list_namespaced_pod(namespace, label_selector="ray.io/is-ray-node=yes").items
    played = [p for p in pods if p.status.pod_ip]
    heads = [p for p in played if p.metadata.labels.get("ray.io/node-type") == "head"]
    workers = [p for p in played if p.metadata.labels.get("ray.io/node-type") == "worker"]
    if len(heads) != 1 or len(workers) != 1:
        raise DeployError(
            f"{namespace}: expected one played head and worker Pod, got "
            f"{[p.metadata.name for p in played]}"
        )
    svcs = {s.metadata.name: s for s in core.list_namespaced_service(namespace).items}
    slices = list(disc.list_namespaced_endpoint_slice(namespace).items)
    hosts: dict[str, list[str]] = {}
    for sl in slices:
        svc = (sl.metadata.labels or {}).get("kubernetes.io/service-name", "")
        for ep in sl.endpoints or []:
            if ep.conditions.ready is False:
                continue
            for addr in ep.addresses:
                # Headless: the Service name answers every endpoint, each Pod has its FQDN.
                # ClusterIP: no kube-proxy here, so the name answers the endpoints directly.
                hosts.setdefault(f"{svc}.{namespace}.svc.{DOMAIN}", []).append(addr)
                if svc in svcs and svcs[svc].spec.cluster_ip == "None":
                    dashed = re.sub(r"[.:]", "-", addr)
                    hosts.setdefault(f"{dashed}.{svc}.{namespace}.svc.{DOMAIN}", []).append(addr)
    head = _read_pod(core, heads[0], "head", slices, svcs)
    worker = _read_pod(core, workers[0], "worker", slices, svcs)
    return LiveCluster(
        source=source,
        namespace=namespace,
        cluster_name=heads[0].metadata.labels.get("ray.io/cluster", ""),
        head=head,
        worker=worker,
        hosts={k: tuple(sorted(set(v))) for k, v in sorted(hosts.items())},
        unplayed_workers=tuple(
            sorted(
                p.metadata.name
                for p in pods
                if not p.status.pod_ip and p.metadata.labels.get("ray.io/node-type") == "worker"
            )
        ),
    )


def create_missing_secrets(api: Any, namespace: str, files: dict[str, str]) -> list[str]:
    """Secrets the Ray Pods mount that do not exist yet, created with `files` (a test CA), as
    the values examples tell the user to do before installing."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    created = []
    pods = core.list_namespaced_pod(namespace, label_selector="ray.io/is-ray-node=yes").items
    names = {
        v.secret.secret_name for p in pods for v in p.spec.volumes or [] if v.secret is not None
    }
    for name in sorted(names):
        try:
            core.read_namespaced_secret(name, namespace)
            continue
        except ApiException as e:
            if e.status != 404:
                raise
        data = {k: base64.b64encode(v.encode()).decode() for k, v in files.items()}
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": name}, "type": "Opaque", "data": data}
        )
        created.append(name)
    return created
