"""Ray pods that ask for more than Kubernetes' restricted Pod Security Standard allows.

A Ray worker runs whatever code its callers submit, so a pod that escapes its sandbox hands
the node, or the mesh around it, to any job: privileged containers, added capabilities
(NET_ADMIN and NET_RAW rewrite the pod's iptables, around the sidecar), root, the host's
namespaces and paths, unconfined seccomp or AppArmor, unsafe sysctls, unmasked /proc and
Windows host processes. uid 1337 is Istio's proxy: istio-iptables sends that uid's (and gid's)
connections around the sidecar, in plaintext and without the pod's mesh identity.

Only settings written out are findings: a field left unset is the cluster's default (which a
restricted namespace enforces), so hand-written samples without a securityContext pass. Every
container counts (init containers, user sidecars, KubeRay's autoscaler through
``spec.autoscalerOptions.securityContext``), except on a running Pod the ones Istio's injector
added (istio-proxy runs as 1337, istio-init as root with NET_ADMIN by design).
"""

from __future__ import annotations

from typing import Any

from ..raymodel import as_int
from . import acknowledge
from .context import Context
from .findings import ERROR, Check, show, yaml_text
from .kinds import CLUSTERS, RAY_POD
from .raypods import RayPod, as_dict, as_list, ray_pods

POD_PRIVILEGED = Check("pod-privileged", ERROR, "a Ray pod's container runs privileged")
POD_CAPABILITIES = Check(
    "pod-capabilities", ERROR, "a Ray pod's container adds capabilities beyond NET_BIND_SERVICE")
POD_ROOT = Check(
    "pod-root", ERROR, "a Ray pod runs as root (runAsUser 0) or allows it (runAsNonRoot false)")
POD_PROXY_UID = Check(
    "pod-proxy-uid", ERROR,
    "a Ray pod runs as uid or gid 1337, Istio's proxy, whose traffic skips the sidecar")
POD_PRIVILEGE_ESCALATION = Check(
    "pod-privilege-escalation", ERROR, "a Ray pod's container sets allowPrivilegeEscalation true")
POD_HOST_NAMESPACE = Check(
    "pod-host-namespace", ERROR, "a Ray pod shares the node's network, PID or IPC namespace")
POD_HOST_PATH = Check("pod-host-path", ERROR, "a Ray pod mounts a hostPath volume")
POD_UNCONFINED = Check(
    "pod-unconfined", ERROR, "a Ray pod runs with seccomp or AppArmor Unconfined")
POD_UNSAFE_SYSCTL = Check(
    "pod-unsafe-sysctl", ERROR, "a Ray pod sets a sysctl outside Kubernetes' safe set")
POD_PROC_MOUNT = Check("pod-proc-mount", ERROR, "a Ray pod's container sets procMount Unmasked")
POD_HOST_PROCESS = Check(
    "pod-host-process", ERROR, "a Ray pod runs as a Windows HostProcess")

CHECKS = (POD_PRIVILEGED, POD_CAPABILITIES, POD_ROOT, POD_PROXY_UID, POD_PRIVILEGE_ESCALATION,
          POD_HOST_NAMESPACE, POD_HOST_PATH, POD_UNCONFINED, POD_UNSAFE_SYSCTL, POD_PROC_MOUNT,
          POD_HOST_PROCESS)
# every Ray pod template and running Ray Pod
READS = (*CLUSTERS, RAY_POD)

ALLOWED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
PROXY_UID = 1337  # istio-proxy's uid and gid: istio-iptables returns their traffic unproxied
# Kubernetes' safe sysctls (the restricted and baseline Pod Security Standards)
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
HOST_NAMESPACES = {"hostNetwork": "network (no sidecar captures its traffic, and Ray binds on "
                                  "the node's addresses)",
                   "hostPID": "process IDs (it sees and signals the node's processes)",
                   "hostIPC": "IPC (shared memory with the node's processes)"}
SECCOMP_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
CONTAINER_SECCOMP = "container.seccomp.security.alpha.kubernetes.io/"
CONTAINER_APPARMOR = "container.apparmor.security.beta.kubernetes.io/"
CONTAINER_KINDS = ("initContainers", "containers", "ephemeralContainers")


def _report(ctx: Context, check: Check, pod: RayPod, key: str, value: Any, where: str,
            what: str) -> None:
    severity, note = acknowledge.severity(ctx, pod.manifest, acknowledge.UNRESTRICTED_PODS)
    ctx.add(check, pod.manifest, key, value, f"{pod.who}, {where}: {what}{note}",
            "remove the setting (the restricted Pod Security Standard leaves it unset); if it "
            f"is intended, acknowledge it with {acknowledge.ANNOTATION}: "
            f"{acknowledge.UNRESTRICTED_PODS} on the RayCluster (the chart writes it when the "
            "values acknowledge the risk)", severity=severity)


def _identity(ctx: Context, pod: RayPod, key: str, sc: dict[str, Any], where: str) -> None:
    """runAsUser, runAsGroup and runAsNonRoot of a pod or container securityContext."""
    user, group = as_int(sc.get("runAsUser")), as_int(sc.get("runAsGroup"))
    if user == 0:
        _report(ctx, POD_ROOT, pod, f"{key}.runAsUser", 0, where,
                "runAsUser: 0 runs it as root")
    if sc.get("runAsNonRoot") is False:
        _report(ctx, POD_ROOT, pod, f"{key}.runAsNonRoot", False, where,
                "runAsNonRoot: false lets the image run as root")
    for field, got in (("runAsUser", user), ("runAsGroup", group)):
        # without a sidecar no iptables rule sends uid 1337 around it
        if got == PROXY_UID and pod.out_of_mesh is None:
            _report(ctx, POD_PROXY_UID, pod, f"{key}.{field}", got, where,
                    f"{field}: {PROXY_UID} is Istio's proxy: istio-iptables sends its "
                    "connections around the sidecar, in plaintext and without the pod's mesh "
                    "identity, so what runs as it leaves the mesh")


def _confinement(ctx: Context, pod: RayPod, key: str, sc: dict[str, Any], where: str) -> None:
    """seccompProfile, appArmorProfile and windowsOptions.hostProcess."""
    for field, name in (("seccompProfile", "seccomp"), ("appArmorProfile", "AppArmor")):
        if str(as_dict(sc.get(field)).get("type") or "") == "Unconfined":
            _report(ctx, POD_UNCONFINED, pod, f"{key}.{field}.type", "Unconfined", where,
                    f"{field}.type: Unconfined runs it without {name} filtering")
    if as_dict(sc.get("windowsOptions")).get("hostProcess") is True:
        _report(ctx, POD_HOST_PROCESS, pod, f"{key}.windowsOptions.hostProcess", True, where,
                "windowsOptions.hostProcess: true runs it as a process of the Windows node")


def _container(ctx: Context, pod: RayPod, key: str, name: str, sc: dict[str, Any]) -> None:
    where = f"container {name}"
    if sc.get("privileged") is True:
        _report(ctx, POD_PRIVILEGED, pod, f"{key}.privileged", True, where,
                "privileged: true gives it every capability and the node's devices: it can "
                "rewrite the pod's iptables around the sidecar or take over the node")
    added = [str(c) for c in as_list(as_dict(sc.get("capabilities")).get("add"))]
    extra = [c for c in added if c.upper().removeprefix("CAP_") not in ALLOWED_CAPABILITIES]
    if extra:
        _report(ctx, POD_CAPABILITIES, pod, f"{key}.capabilities.add", extra, where,
                f"capabilities.add {yaml_text(extra)} goes beyond NET_BIND_SERVICE (NET_ADMIN and "
                "NET_RAW rewrite the pod's iptables and send traffic around the sidecar)")
    if sc.get("allowPrivilegeEscalation") is True:
        _report(ctx, POD_PRIVILEGE_ESCALATION, pod, f"{key}.allowPrivilegeEscalation", True,
                where, "allowPrivilegeEscalation: true lets its processes gain privileges "
                "(setuid binaries) beyond the container's own")
    if str(sc.get("procMount") or "") == "Unmasked":
        _report(ctx, POD_PROC_MOUNT, pod, f"{key}.procMount", "Unmasked", where,
                "procMount: Unmasked exposes the node's /proc paths the runtime masks")
    _identity(ctx, pod, key, sc, where)
    _confinement(ctx, pod, key, sc, where)


def _pod_level(ctx: Context, pod: RayPod) -> None:
    spec, key = pod.spec, f"{pod.path}spec"
    for field, what in HOST_NAMESPACES.items():
        if spec.get(field) is True:
            _report(ctx, POD_HOST_NAMESPACE, pod, f"{key}.{field}", True, "pod",
                    f"{field}: true shares the node's {what}")
    for i, vol in enumerate(as_list(spec.get("volumes"))):
        vol = as_dict(vol)
        if "hostPath" in vol:
            path = as_dict(vol.get("hostPath")).get("path")
            _report(ctx, POD_HOST_PATH, pod, f"{key}.volumes[{i}].hostPath", path,
                    f"volume {vol.get('name')}", f"hostPath {show(path)} mounts the node's "
                    "files into the pod")
    sc = as_dict(spec.get("securityContext"))
    sc_key = f"{key}.securityContext"
    _identity(ctx, pod, sc_key, sc, "pod securityContext")
    _confinement(ctx, pod, sc_key, sc, "pod securityContext")
    for i, sysctl in enumerate(as_list(sc.get("sysctls"))):
        name = str(as_dict(sysctl).get("name") or "")
        if name not in SAFE_SYSCTLS:
            _report(ctx, POD_UNSAFE_SYSCTL, pod, f"{sc_key}.sysctls[{i}]", name,
                    "pod securityContext", f"sysctl {name} is not in Kubernetes' safe set: "
                    "it can reach beyond the pod (the node's kernel or other pods)")
    _annotations(ctx, pod)


def _annotations(ctx: Context, pod: RayPod) -> None:
    """The seccomp and AppArmor annotations older manifests use instead of the fields."""
    for k, v in pod.annotations.items():
        if v.lower() != "unconfined" or not (k == SECCOMP_ANNOTATION or k.startswith(
                (CONTAINER_SECCOMP, CONTAINER_APPARMOR))):
            continue
        where = "pod" if k == SECCOMP_ANNOTATION else f"container {k.rsplit('/', 1)[1]}"
        _report(ctx, POD_UNCONFINED, pod, f"{pod.path}metadata.annotations.{k}", v, where,
                f"annotation {k}: {v} runs it without "
                f"{'AppArmor' if 'apparmor' in k else 'seccomp'} filtering")


def check(ctx: Context) -> None:
    """The pod and every container securityContext of each Ray pod template and Ray Pod."""
    for pod in ray_pods(ctx):
        _pod_level(ctx, pod)
        injected = pod.injected()
        for part in CONTAINER_KINDS:
            for i, c in enumerate(as_list(pod.spec.get(part))):
                c = as_dict(c)
                name = str(c.get("name") or f"{part}[{i}]")
                if name in injected:
                    continue  # Istio's own containers, as its injector made them
                _container(ctx, pod, f"{pod.path}spec.{part}[{i}].securityContext", name,
                           as_dict(c.get("securityContext")))
        for name, key, sc in pod.extra_containers:
            _container(ctx, pod, key, name, sc)
