"""The oracle for what a Pod will run: its container's command, expanded the way it will be.

The KubeRay operator writes each Ray container's command (``bash -lc -- "ulimit ...; ray start
--k=v ..."``) from the RayCluster. What ``ray start`` finally receives depends on two
expansions: the kubelet's ``$(VAR)`` references in command/args, then bash's own expansion of
``$VAR`` / ``${VAR//x/y}`` with the container's environment. Both are done here for real: the
kubelet rules below (Kubernetes' ``third_party/forked/golang/expansion``), then bash itself runs
the command with ``ray`` replaced by a function that prints its argv. Env values come from the
Pod as the API server holds it: literal values, the downward API (fieldRef, resourceFieldRef)
and Secret / ConfigMap keys read back from the API server.

Independent of meshray's code: it reads only live objects.
"""

from __future__ import annotations

import base64
import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

_FIELD = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def _field_ref(pod: Any, path: str) -> str:
    m = _FIELD.match(path)
    if m:
        src = pod.metadata.labels if m.group(1) == "labels" else pod.metadata.annotations
        return str((src or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": lambda: pod.metadata.name,
        "metadata.namespace": lambda: pod.metadata.namespace,
        "metadata.uid": lambda: pod.metadata.uid,
        "spec.nodeName": lambda: pod.spec.node_name,
        "spec.serviceAccountName": lambda: pod.spec.service_account_name,
        "status.hostIP": lambda: pod.status.host_ip,
        "status.podIP": lambda: pod.status.pod_ip,
        "status.podIPs": lambda: ",".join(i.ip for i in (pod.status.pod_ips or [])),
    }
    if path not in simple:
        raise ValueError(f"fieldRef {path!r} not handled by the oracle")
    return str(simple[path]() or "")


def _quantity(value: str) -> float:
    suffixes = {
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "Ki": 1024,
        "Mi": 1024**2,
        "Gi": 1024**3,
        "Ti": 1024**4,
    }
    for s in sorted(suffixes, key=len, reverse=True):
        if value.endswith(s):
            return float(value[: -len(s)]) * suffixes[s]
    return float(value)


def _resource_ref(container: Any, ref: Any) -> str:
    kind, _, res = ref.resource.partition(".")
    src = getattr(container.resources, kind) or {} if container.resources else {}
    if res not in src:
        return "0"  # the kubelet reports node allocatable; nothing to compare against here
    divisor = _quantity(str(ref.divisor or "1"))
    return str(math.ceil(_quantity(str(src[res])) / divisor))


def pod_env(core: client.CoreV1Api, pod: Any, container: Any) -> dict[str, str]:
    env: dict[str, str] = {}
    ns = pod.metadata.namespace
    for src in container.env_from or []:
        if src.config_map_ref:
            data = core.read_namespaced_config_map(src.config_map_ref.name, ns).data or {}
        else:
            raw = core.read_namespaced_secret(src.secret_ref.name, ns).data or {}
            data = {k: base64.b64decode(v).decode() for k, v in raw.items()}
        env.update({f"{src.prefix or ''}{k}": v for k, v in data.items()})
    for e in container.env or []:
        if e.value_from is None:
            env[e.name] = expand_kubelet(e.value or "", env)
            continue
        vf = e.value_from
        if vf.field_ref:
            env[e.name] = _field_ref(pod, vf.field_ref.field_path)
        elif vf.resource_field_ref:
            env[e.name] = _resource_ref(container, vf.resource_field_ref)
        elif vf.secret_key_ref:
            raw = core.read_namespaced_secret(vf.secret_key_ref.name, ns).data or {}
            env[e.name] = base64.b64decode(raw[vf.secret_key_ref.key]).decode()
        elif vf.config_map_key_ref:
            data = core.read_namespaced_config_map(vf.config_map_key_ref.name, ns).data or {}
            env[e.name] = data[vf.config_map_key_ref.key]
        else:
            raise ValueError(f"env {e.name}: unsupported valueFrom")
    return env


def expand_kubelet(s: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, `$$` is an escaped `$`,
    anything else is left as written."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "$" and i + 1 < len(s):
            nxt = s[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = s.find(")", i + 2)
                if end != -1:
                    name = s[i + 2 : end]
                    out.append(env[name] if name in env else s[i : end + 1])
                    i = end + 1
                    continue
        out.append(s[i])
        i += 1
    return "".join(out)


@dataclass
class RayStart:
    pod: str
    head: bool
    params: dict[str, str]
    env: dict[str, str]
    argv: list[str]


def shell_script(name: str, words: list[str]) -> str:
    """The script of a `bash [-l]c [--] SCRIPT` command (how KubeRay runs `ray start`)."""
    if not words or os.path.basename(words[0]) not in ("bash", "sh"):
        raise ValueError(f"{name}: the Ray container does not run a shell: {words[:3]}")
    rest = words[1:]
    while rest and rest[0].startswith("-"):
        rest = rest[1:]
    if not rest:
        raise ValueError(f"{name}: no script in {words}")
    return rest[0]


def ray_start(core: client.CoreV1Api, pod: Any) -> RayStart:
    """Run the Pod's Ray container command through bash, with ``ray`` a function that records
    its arguments instead of starting Ray, and parse what `ray start` would receive."""
    container = pod.spec.containers[0]
    env = pod_env(core, pod, container)
    words = [expand_kubelet(w, env) for w in [*(container.command or []), *(container.args or [])]]
    script = shell_script(pod.metadata.name, words)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "argv")
        prelude = (
            f"ray() {{ printf '%s\\0' \"$@\" >> {out}; printf '\\1\\0' >> {out}; }}; "
            "ulimit() { :; }; "
        )
        res = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", prelude + script],
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        if res.returncode != 0:
            raise ValueError(f"{pod.metadata.name}: bash failed ({res.returncode}): {res.stderr}")
        raw = Path(out).read_bytes().decode() if os.path.exists(out) else ""
    calls = [c.split("\0")[:-1] for c in raw.split("\1\0") if c]
    starts = [c for c in calls if c and c[0] == "start"]
    if len(starts) != 1:
        raise ValueError(f"{pod.metadata.name}: expected one `ray start`, got {calls}")
    argv = starts[0]
    params: dict[str, str] = {}
    head = False
    for a in argv[1:]:
        if a == "--head":
            head = True
        elif a == "--block":
            continue
        elif a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            params[k] = v
        elif a.startswith("--"):
            params[a[2:]] = ""
        else:
            raise ValueError(f"{pod.metadata.name}: unexpected ray start word {a!r}")
    return RayStart(pod.metadata.name, head, params, env, argv)


# Port-carrying flags of `ray start` and the env vars Ray reads a port from (REFERENCE §1).
PORT_FLAGS = (
    "port",
    "dashboard-port",
    "ray-client-server-port",
    "node-manager-port",
    "object-manager-port",
    "runtime-env-agent-port",
    "dashboard-agent-grpc-port",
    "dashboard-agent-listen-port",
    "metrics-export-port",
    "dashboard-grpc-port",
)
PORT_ENVS = (
    "AUTOSCALER_METRIC_PORT",
    "DASHBOARD_METRIC_PORT",
    "RAY_SERVE_DEFAULT_HTTP_PORT",
    "RAY_SERVE_DEFAULT_GRPC_PORT",
)
HEAD_ONLY_FLAGS = ("port", "dashboard-port", "ray-client-server-port", "dashboard-grpc-port")
HEAD_ONLY_ENVS = ("AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT")


def listening_ports(rs: RayStart) -> dict[int, str]:
    """Every TCP port this node's Ray will listen on for other nodes, with the flag or env
    that sets it; worker ports as 'worker'."""
    ports: dict[int, str] = {}
    for f in PORT_FLAGS:
        if f in rs.params and (rs.head or f not in HEAD_ONLY_FLAGS):
            ports[int(rs.params[f])] = f
    for e in PORT_ENVS:
        if e in rs.env and (rs.head or e not in HEAD_ONLY_ENVS):
            ports[int(rs.env[e])] = e
    if "worker-port-list" in rs.params:
        for p in rs.params["worker-port-list"].split(","):
            ports[int(p)] = "worker"
    else:
        lo, hi = (
            int(rs.params.get("min-worker-port", 10002)),
            int(rs.params.get("max-worker-port", 19999)),
        )
        for p in range(lo, hi + 1):
            ports[p] = "worker"
    return ports
