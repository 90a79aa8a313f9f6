"""Running Ray Pods (``meshray audit --cluster``): what each Pod really runs against the Services.

The RayCluster says what new Pods will run; a running Pod keeps the ``ray start`` flags it was
created with (KubeRay does not replace Pods when the RayCluster changes unless
``upgradeStrategy: Recreate``, KubeRay >= 1.6). So the live audit reads each Ray Pod's own
container command (what KubeRay wrote into it), expands ``$VAR`` / ``${VAR//x/y}`` with the
Pod's env and IP, and checks the ports it will listen on against the Services that select it,
its flags against its RayCluster group's current ones, and its ``node-ip-address`` against its
Pod FQDN. Only Pods appear in the input when the audit reads a live cluster.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from typing import Any

from ..manifests import Manifest
from ..raymodel import Cluster, Group
from ..services import Service
from .context import Context
from .findings import ERROR, Check, show
from .kinds import CLUSTERS, RAY_POD, SERVICE
from .raypods import as_dict, as_list, strings

POD_PORT_UNDECLARED = Check(
    "pod-port-undeclared", ERROR,
    "a running Ray Pod listens on a port no Service selecting it declares")
POD_STALE_FLAGS = Check(
    "pod-stale-flags", ERROR,
    "a running Ray Pod's ray start ports differ from its RayCluster group's (not recreated)")
POD_NODE_IP = Check(
    "pod-node-ip", ERROR,
    "a running Ray Pod's node-ip-address is not its FQDN under a headless Service")
POD_UNREADABLE = Check(
    "pod-command-unreadable", ERROR, "a Ray Pod's container command has no ray start to read")

CHECKS = (POD_PORT_UNDECLARED, POD_STALE_FLAGS, POD_NODE_IP, POD_UNREADABLE)
# running Ray Pods, their RayCluster groups, and the Services selecting them
READS = (*CLUSTERS, SERVICE, RAY_POD)

# flags of `ray start` that pin a port, and whether only the head opens it
PORT_FLAGS = {"port": True, "dashboard-port": True, "ray-client-server-port": True,
              "dashboard-grpc-port": True, "node-manager-port": False,
              "object-manager-port": False, "runtime-env-agent-port": False,
              "dashboard-agent-grpc-port": False, "dashboard-agent-listen-port": False,
              "metrics-export-port": False}
PORT_ENVS = {"AUTOSCALER_METRIC_PORT": True, "DASHBOARD_METRIC_PORT": True,
             "RAY_SERVE_DEFAULT_HTTP_PORT": False, "RAY_SERVE_DEFAULT_GRPC_PORT": False}
WORKER_KEYS = ("min-worker-port", "max-worker-port", "worker-port-list")
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?://([^/}]*)/([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_FIELDS = {"status.podIP": ("status", "podIP"), "status.hostIP": ("status", "hostIP"),
           "metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace"),
           "spec.nodeName": ("spec", "nodeName")}


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return strings(as_dict(obj.get("metadata")).get("labels"))


def pod_env(obj: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """Literal env values and the downward-API fields a kubelet would resolve."""
    env: dict[str, str] = {}
    for e in as_list(container.get("env")):
        if not isinstance(e, dict) or "name" not in e:
            continue
        if "value" in e:
            env[str(e["name"])] = str(e["value"])
            continue
        ref = as_dict(as_dict(e.get("valueFrom")).get("fieldRef")).get("fieldPath")
        if isinstance(ref, str) and ref in _FIELDS:
            section, key = _FIELDS[ref]
            value = as_dict(obj.get(section)).get(key)
            if value is not None:
                env[str(e["name"])] = str(value)
    return env


def _bash_glob_class(pattern: str) -> re.Pattern[str]:
    """A bash pattern of literal characters and ``[...]`` classes, as a regex."""
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            out.append("[" + re.escape(pattern[i + 1:end]) + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def expand(value: str, env: dict[str, str]) -> str:
    """``$VAR``, ``${VAR}`` and ``${VAR//pattern/replacement}`` (the forms ray start flags use);
    an unset variable expands to nothing, as in bash."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(4)
        val = env.get(name, "")
        if m.group(2) is not None:
            val = _bash_glob_class(m.group(2)).sub(m.group(3), val)
        return val

    return _REF.sub(sub, value)


def ray_start(obj: dict[str, Any]) -> tuple[dict[str, str], bool, dict[str, str]] | None:
    """(flags, is head, env) of the `ray start` in the Pod's first container, or None."""
    containers = as_list(as_dict(obj.get("spec")).get("containers"))
    if not containers or not isinstance(containers[0], dict):
        return None
    c = containers[0]
    words = [str(w) for w in as_list(c.get("command")) + as_list(c.get("args"))]
    script = " ".join(w for w in words if "ray start" in w) or " ".join(words)
    at = script.find("ray start")
    if at < 0:
        return None
    env = pod_env(obj, c)
    try:
        tokens = shlex.split(script[at + len("ray start"):].split(";")[0], posix=True)
    except ValueError:
        return None
    flags: dict[str, str] = {}
    head = False
    for t in tokens:
        if t in ("&&", "||", "|"):
            break
        if t == "--head":
            head = True
        elif t.startswith("--"):
            k, _, v = t[2:].partition("=")
            flags[k] = expand(v, env)
    return flags, head, env


def listening(flags: dict[str, str], env: dict[str, str], head: bool) -> dict[int, str]:
    ports: dict[int, str] = {}
    for flag, head_only in PORT_FLAGS.items():
        if flag in flags and (head or not head_only) and flags[flag].isdigit():
            ports[int(flags[flag])] = f"--{flag}"
    for name, head_only in PORT_ENVS.items():
        if name in env and (head or not head_only) and env[name].isdigit():
            ports[int(env[name])] = f"env {name}"
    if flags.get("worker-port-list"):
        for item in flags["worker-port-list"].split(","):
            if item.strip().isdigit():
                ports[int(item)] = "--worker-port-list"
    elif flags.get("min-worker-port", "").isdigit() and flags.get("max-worker-port", "").isdigit():
        for p in range(int(flags["min-worker-port"]), int(flags["max-worker-port"]) + 1):
            ports[p] = "worker port range"
    return ports


def _declared(pod: dict[str, Any], svc: Service) -> set[int]:
    named = {str(p.get("name")): n
             for c in as_list(as_dict(pod.get("spec")).get("containers"))
             for p in as_list(as_dict(c).get("ports")) if isinstance(p, dict) and p.get("name")
             and (n := _port(p.get("containerPort"))) is not None}
    out = set()
    for _, p in svc.ports():
        target = p.get("targetPort", p.get("port"))
        if (n := _port(target)) is not None:
            out.add(n)
        elif isinstance(target, str) and target in named:
            out.add(named[target])
    return out


def _group_of(pod: Manifest, clusters: Sequence[tuple[Cluster, Manifest]],
              namespace: str) -> tuple[Cluster, Group] | None:
    labels = _labels(pod.obj)
    for c, _ in clusters:
        if c.name != labels.get("ray.io/cluster") or c.namespace != namespace:
            continue
        for g in c.groups:
            if (labels.get("ray.io/node-type") == "head") == g.is_head and (
                    g.is_head or g.name == labels.get("ray.io/group")):
                return c, g
    return None


def check(ctx: Context) -> None:
    for pod in ctx.pods:
        ns = pod.namespace(ctx.namespace)
        got = ray_start(pod.obj)
        if got is None:
            ctx.add(POD_UNREADABLE, pod, "spec.containers[0].args", None,
                    "no `ray start` in the Ray container's command",
                    "check the Pod was created by KubeRay from a RayCluster")
            continue
        flags, head, env = got
        labels = _labels(pod.obj)
        selecting = [s for s in ctx.services if s.namespace == ns and s.selects(labels)]
        _check_ports(ctx, pod, flags, env, head, selecting)
        _check_node_ip(ctx, pod, flags, selecting, ns)
        found = _group_of(pod, ctx.clusters, ns)
        if found:
            _check_stale(ctx, pod, flags, env, found[0], found[1])


def _check_ports(ctx: Context, pod: Manifest, flags: dict[str, str], env: dict[str, str],
                 head: bool, selecting: list[Service]) -> None:
    declared: set[int] = set()
    for s in selecting:
        declared |= _declared(pod.obj, s)
    missing = {p: why for p, why in listening(flags, env, head).items() if p not in declared}
    if missing:
        ports = sorted(missing)
        shown = ", ".join(f"{p} ({missing[p]})" for p in ports[:8]) + (
            f" and {len(ports) - 8} more" if len(ports) > 8 else "")
        ctx.add(POD_PORT_UNDECLARED, pod, "spec.containers[0].args", ports,
                f"listens on {shown} that no Service selecting it declares "
                f"({', '.join(s.name for s in selecting) or 'no Service selects it'}): "
                "peers' sidecars cannot reach them under STRICT mTLS",
                "recreate the Pod if it predates the last helm upgrade "
                "(kubectl delete pod), else declare the ports in the headless Service")


def _check_node_ip(ctx: Context, pod: Manifest, flags: dict[str, str],
                   selecting: list[Service], ns: str) -> None:
    value = flags.get("node-ip-address")
    ip = str(as_dict(pod.obj.get("status")).get("podIP") or "")
    if not ip:
        return  # not running yet
    dashed = ip.replace(".", "-").replace(":", "-")
    wanted = [f"{dashed}.{s.name}.{ns}.svc." for s in selecting if s.headless]
    if value and any(value.startswith(w) and len(value) > len(w) for w in wanted):
        return
    expected = (wanted[0] + "<domain>" if wanted
                else "an FQDN under a headless Service selecting the Pod")
    ctx.add(POD_NODE_IP, pod, "node-ip-address", value, f"pod IP {ip}: expected {expected}",
            "set node-ip-address to ${POD_IP//[.:]/-}.<headless svc>.<ns>.svc.<domain>")


def _check_stale(ctx: Context, pod: Manifest, flags: dict[str, str], env: dict[str, str],
                 c: Cluster, g: Group) -> None:
    diffs = []
    for key in (*PORT_FLAGS, *WORKER_KEYS):
        want = g.params.get(key)
        if want is not None and flags.get(key) != str(want):
            diffs.append(f"--{key} {_shown(flags.get(key))} (RayCluster: {show(str(want))})")
    for name in PORT_ENVS:
        want = g.env_value(name)
        if want is not None and env.get(name) != str(want):
            diffs.append(f"env {name} {_shown(env.get(name))} (RayCluster: {show(str(want))})")
    if diffs:
        ctx.add(POD_STALE_FLAGS, pod, "spec.containers[0].args", None,
                f"runs with other ports than {c.ref} group {g.name} now sets: "
                + "; ".join(diffs),
                f"kubectl delete pod -n {c.namespace} -l ray.io/cluster={c.name} (KubeRay "
                "recreates them), or set spec.upgradeStrategy.type=Recreate (KubeRay >= 1.6)")


def _shown(flag: str | None) -> str:
    """A flag's value as the Pod runs it, or that the Pod does not set it."""
    return "(unset)" if flag is None else show(flag)


def _port(value: Any) -> int | None:
    """A port number written as a number or digits (not a bool, not a name)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None
