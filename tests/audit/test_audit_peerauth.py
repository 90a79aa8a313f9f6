"""meshray/audit/peerauth.py: PeerAuthentication policies around the Ray pods."""

from __future__ import annotations

from audit_support import Case, Mutation, pa

CASES: list[Case] = [
    ("peerauth-no-match", "error",
     lambda d: pa(d)["spec"]["selector"]["matchLabels"].update({"ray.io/cluster": "dmeo"})),
    ("peerauth-port-unused", "error",
     lambda d: pa(d)["spec"]["portLevelMtls"].update({"7777": {"mode": "STRICT"}})),
    ("peerauth-port-no-selector", "error", lambda d: pa(d)["spec"].pop("selector")),
    ("peerauth-root-selector", "warning",
     lambda d: pa(d)["metadata"].update(namespace="istio-system")),
    ("peerauth-permissive", "warning", lambda d: pa(d)["spec"]["mtls"].update(mode="PERMISSIVE")),
    # the whole policy, not one port: plaintext only, on every Ray port
    ("peerauth-permissive", "warning", lambda d: pa(d)["spec"]["mtls"].update(mode="DISABLE")),
    # the same, namespace-wide (no selector, no port exceptions)
    ("peerauth-permissive", "warning", lambda d: (
        pa(d)["spec"].pop("selector"), pa(d)["spec"].pop("portLevelMtls"),
        pa(d)["spec"]["mtls"].update(mode="DISABLE"))),
    ("peerauth-permissive", "warning",
     lambda d: pa(d)["spec"]["portLevelMtls"].update({"8080": {"mode": "DISABLE"}})),
    ("peerauth-none", "info", lambda d: d.remove(pa(d))),
]


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    # a namespace-wide STRICT policy also covers the cluster
    ("namespace-wide policy", lambda d: (pa(d)["spec"].pop("selector"),
                                         pa(d)["spec"].pop("portLevelMtls"))),
    # a PeerAuthentication for another workload is none of our business
    ("unrelated policy", lambda d: d.append({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "spark", "namespace": "ray"},
        "spec": {"selector": {"matchLabels": {"spark-role": "driver"}},
                 "mtls": {"mode": "PERMISSIVE"}}})),
]
