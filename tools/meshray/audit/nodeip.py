"""``node-ip-address``: each Ray node must register its Pod FQDN under the headless Service.

Istio treats traffic to bare pod IPs as passthrough (no L7), so Ray must advertise a name the
mesh knows: ``<pod-ip-with-dashes>.<headless svc>.<ns>.svc.<domain>``, built from an env var
set from ``status.podIP`` (``hostname -I`` breaks on dual-stack pods).
"""

from __future__ import annotations

import re

from ..manifests import Manifest
from ..raymodel import Cluster
from ..services import fqdn_parts, headless_service
from .context import Context
from .findings import ERROR, Check
from .kinds import CLUSTERS, SERVICE

NODE_IP_MISSING = Check(
    "node-ip-missing", ERROR, "node-ip-address not set: Ray registers the bare pod IP")
NODE_IP_NOT_FQDN = Check(
    "node-ip-not-fqdn", ERROR, "node-ip-address is not a Pod FQDN under the headless Service")
NODE_IP_HOSTNAME_I = Check(
    "node-ip-hostname-i", ERROR, "node-ip-address built with `hostname -I`")
NODE_IP_ENV_MISSING = Check(
    "node-ip-env-missing", ERROR, "node-ip-address uses a variable not set from status.podIP")

CHECKS = (NODE_IP_MISSING, NODE_IP_NOT_FQDN, NODE_IP_HOSTNAME_I, NODE_IP_ENV_MISSING)
# each Ray cluster and the headless Service its Pod FQDNs live under
READS = (*CLUSTERS, SERVICE)

_HOSTNAME_I = re.compile(r"hostname\s+(-[a-zA-Z]*I|--all-ip-addresses)")
_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def check(ctx: Context, c: Cluster, m: Manifest) -> None:
    svc = headless_service(ctx.services, c)
    svc_name = svc.name if svc else f"{c.base_name}-headless-svc"
    for g in c.groups:
        if g.params_not_mapping is not None:
            continue  # params-not-mapping (cluster family): no flag of the group was read
        key = f"{g.path}.rayStartParams.node-ip-address"
        raw = g.params.get("node-ip-address")
        want = f"${{POD_IP//[.:]/-}}.{svc_name}.{c.namespace}.svc.cluster.local"
        if raw is None:
            ctx.add(NODE_IP_MISSING, m, key, None,
                    f"group {g.name} registers its bare pod IP: Istio sees traffic to pod IPs "
                    "as passthrough, no L7 telemetry",
                    f"set node-ip-address: {want} with POD_IP from fieldRef status.podIP")
            continue
        value = str(raw)
        if _HOSTNAME_I.search(value):
            ctx.add(NODE_IP_HOSTNAME_I, m, key, value,
                    "`hostname -I` prints every address (breaks on dual-stack pods)",
                    "use an env var from the downward API (fieldRef status.podIP): " + want)
        s_name, ns, domain, pod = fqdn_parts(value)
        if not s_name or not domain or s_name != svc_name or ns != c.namespace:
            where = f"{s_name}.{ns}" if s_name else "no <svc>.<ns>.svc.<domain> suffix"
            ctx.add(NODE_IP_NOT_FQDN, m, key, value,
                    f"not a Pod FQDN under {svc_name}.{c.namespace} (found: {where})",
                    f"set node-ip-address: {want}")
        elif "$" not in pod:
            ctx.add(NODE_IP_NOT_FQDN, m, key, value,
                    "the pod part is a constant: every pod would claim the same address",
                    f"derive it from the pod IP: {want}")
        elif re.fullmatch(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", pod):
            ctx.add(NODE_IP_NOT_FQDN, m, key, value,
                    "the pod IP is used with its dots, which adds DNS labels",
                    "replace the separators with dashes: ${VAR//[.:]/-}")
        if "$(" in pod and _HOSTNAME_I.search(pod):
            continue
        env = g.env()
        for var in _VAR.findall(pod):
            entry = env.get(var)
            source = entry.get("valueFrom") if entry else None
            ref = source.get("fieldRef") if isinstance(source, dict) else None
            path = ref.get("fieldPath") if isinstance(ref, dict) else None
            if path != "status.podIP":
                why = "is not in the Ray container's env" if entry is None else (
                    "does not come from fieldRef status.podIP")
                ctx.add(NODE_IP_ENV_MISSING, m, key, value,
                        f"${var} {why} in group {g.name}",
                        f"add env {{name: {var}, valueFrom: {{fieldRef: "
                        "{fieldPath: status.podIP}}}} to the first container")
