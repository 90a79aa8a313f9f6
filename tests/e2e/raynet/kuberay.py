"""What KubeRay's operator turns a group's rayStartParams into: the container's shell command.

KubeRay fills the params it always sets (workers' ``address``, ``metrics-export-port``,
``dashboard-agent-listen-port``, the head's ``dashboard-host``, ``num-cpus``/``memory`` from
the container's resources), then runs ``ulimit -n 65536; ray start ... --block`` through
``bash -lc``, values unquoted, so ``$VAR`` and ``${VAR//x/y}`` in a value are expanded by
bash with the container's environment. The harness does the same without ``--block`` (it
waits for ``ray start`` to return) and without ``-l`` (the host's login profile would reset
PATH); the evaluation of every value is the same bash word expansion.
"""

from __future__ import annotations

import shlex

from .contract import (
    KUBERAY_DEFAULT_AGENT_LISTEN_PORT,
    KUBERAY_DEFAULT_METRICS_PORT,
    ClusterContract,
    NodeSpec,
)


def effective_params(contract: ClusterContract, node: NodeSpec) -> dict[str, str]:
    params = dict(node.start_params)
    params.setdefault("metrics-export-port", str(KUBERAY_DEFAULT_METRICS_PORT))
    params.setdefault("dashboard-agent-listen-port", str(KUBERAY_DEFAULT_AGENT_LISTEN_PORT))
    if node.role == "head":
        params.setdefault("dashboard-host", "0.0.0.0")
    else:
        params.setdefault("address", f"{contract.head_service_fqdn}:{contract.gcs_port()}")
    if node.cpu is not None:
        params.setdefault("num-cpus", node.cpu)
    if node.memory is not None:
        params.setdefault("memory", node.memory)
    return params


def ray_start_words(contract: ClusterContract, node: NodeSpec, ray_bin: str) -> str:
    """The `ray start` part of the container command, as a shell string (values unquoted)."""
    params = effective_params(contract, node)
    words = [shlex.quote(ray_bin), "start"]
    if node.role == "head":
        words.append("--head")
    words += [f"--{k}={v}" for k, v in sorted(params.items())]
    return " ".join(words)


def container_command(contract: ClusterContract, node: NodeSpec, ray_bin: str) -> str:
    return f"ulimit -n 65536; {ray_start_words(contract, node, ray_bin)}"


def argv_probe(contract: ClusterContract, node: NodeSpec, ray_bin: str) -> str:
    """A bash script printing, NUL-separated, the argv bash would hand to `ray start`."""
    return f"set -- {ray_start_words(contract, node, ray_bin)}; printf '%s\\0' \"$@\""
