"""Support of the mesh suite: asking the real istiod what it sends a Ray Pod's sidecar."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
XDS = REPO / "bin" / "meshray-xds"


class Mesh:
    def __init__(self, cp: Any, xds_addr: str) -> None:
        self.cp = cp
        self.api = cp.api_client()
        self.kubeconfig = cp.kubeconfig
        self.xds_addr = xds_addr

    def sidecar_config(self, pod: Any) -> dict[str, Any]:
        res = subprocess.run(
            [
                str(XDS),
                "-addr",
                self.xds_addr,
                "-pod",
                pod.metadata.name,
                "-namespace",
                pod.metadata.namespace,
                "-ip",
                pod.status.pod_ip,
                "-labels",
                json.dumps(pod.metadata.labels or {}),
                "-service-account",
                pod.spec.service_account_name or "default",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        return dict(json.loads(res.stdout))


# ---- outbound: what a sidecar does with a connection to <ip>:<port> (addressed by host) ----------
TLS_SOCKET = "envoy.transport_sockets.tls"


def _domain_rank(domain: str, host: str) -> int | None:
    """Envoy's virtual host domain match: exact beats suffix wildcards (longer first), which
    beat prefix wildcards, which beat `*`. None: no match."""
    host = host.lower()
    domain = domain.lower()
    if domain == host:
        return 10**6
    if domain == "*":
        return 0
    if domain.startswith("*") and host.endswith(domain[1:]) and len(host) > len(domain) - 1:
        return 10**3 + len(domain)
    if domain.endswith("*") and host.startswith(domain[:-1]) and len(host) > len(domain) - 1:
        return len(domain)
    return None


def route_cluster(route_config: dict[str, Any], host: str) -> str | None:
    """The cluster the route configuration sends a request for `host` to (first route of the
    best-matching virtual host; Istio's outbound routes ignore the port in host matching)."""
    best: tuple[int, dict[str, Any]] | None = None
    for vh in route_config.get("virtualHosts") or []:
        for d in vh.get("domains") or []:
            rank = _domain_rank(d, host)
            if rank is not None and (best is None or rank > best[0]):
                best = (rank, vh)
    if best is None:
        return None
    route = (best[1].get("routes") or [{}])[0].get("route") or {}
    return route.get("cluster")


def cluster_kind(cluster: dict[str, Any]) -> str:
    opts = (cluster.get("typedExtensionProtocolOptions") or {}).get(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ) or {}
    return "grpc" if "http2ProtocolOptions" in (opts.get("explicitHttpConfig") or {}) else "http"


def istio_mtls(cluster: dict[str, Any]) -> bool:
    """The cluster originates Istio mutual TLS: a TLS transport socket with a client
    certificate and Istio's ALPN."""
    ts = cluster.get("transportSocket") or {}
    if ts.get("name") != TLS_SOCKET:
        return False
    common = (ts.get("typedConfig") or {}).get("commonTlsContext") or {}
    return "istio" in (common.get("alpnProtocols") or []) and bool(
        common.get("tlsCertificateSdsSecretConfigs")
    )


def outbound(dump: dict[str, Any], ip: str, port: int, host: str) -> dict[str, Any]:
    """What the sidecar of `dump` does with a plaintext HTTP/2 (h2c) connection a Ray process
    opens to ip:port with `host` as :authority: the listener Envoy picks (<ip>_<port> before
    0.0.0.0_<port>; none: virtualOutbound's passthrough), its filter chain, the cluster, and
    whether that cluster speaks L7 (kind http/grpc) and originates Istio mTLS."""
    listeners = {li["name"]: li for li in dump["listeners"]}
    clusters = {c["name"]: c for c in dump["clusters"]}
    routes = {r["name"]: r for r in dump["routes"]}
    li = listeners.get(f"{ip}_{port}") or listeners.get(f"0.0.0.0_{port}")
    if li is None:
        return {"listener": "virtualOutbound", "kind": "passthrough", "cluster": None,
                "mtls": False}
    for fc in li.get("filterChains") or []:
        m = fc.get("filterChainMatch") or {}
        if m.get("transportProtocol", "raw_buffer") != "raw_buffer":
            continue
        if m.get("applicationProtocols") and "h2c" not in m["applicationProtocols"]:
            continue
        if m.get("prefixRanges") and ip not in {r.get("addressPrefix") for r in m["prefixRanges"]}:
            continue
        last = fc["filters"][-1]
        cfg = last.get("typedConfig") or {}
        if last["name"] == "envoy.filters.network.http_connection_manager":
            name = (cfg.get("rds") or {}).get("routeConfigName")
            rc = routes.get(name) if name else cfg.get("routeConfig")
            cname = route_cluster(rc or {}, host)
            c = clusters.get(cname or "", {})
            kind = cluster_kind(c) if c else "none"
        else:
            cname, kind = cfg.get("cluster"), "tcp"
            c = clusters.get(cname or "", {})
        return {"listener": li["name"], "kind": kind, "cluster": cname, "mtls": istio_mtls(c)}
    return {"listener": li["name"], "kind": "none", "cluster": None, "mtls": False}


def string_match(m: dict[str, Any], s: str) -> bool:
    """Istio's string matchers as istiod sends them: Envoy's StringMatcher (exact, prefix,
    suffix, safeRegex) and ztunnel's StringMatch (exact, prefix, suffix, presence). Anything
    else fails the test rather than pass unread."""
    if "exact" in m:
        return bool(s == m["exact"])
    if "prefix" in m:
        return s.startswith(m["prefix"])
    if "suffix" in m:
        return s.endswith(m["suffix"])
    if "safeRegex" in m:
        return re.fullmatch(m["safeRegex"]["regex"], s) is not None
    if "presence" in m:
        return True
    raise AssertionError(f"a string matcher this test does not read: {m}")


# ---- which transport socket a cluster uses towards one endpoint ---------------------------------
SOCKET_MATCH_FILTER = "envoy.transport_socket_match"  # the endpoint metadata Envoy matches on


def tls_summary(socket: dict[str, Any] | None) -> dict[str, Any] | None:
    """An upstream TLS transport socket as the report names it: ALPN, SNI, the subject alt
    names it verifies, whether it presents a client certificate; None for any other socket."""
    if not socket or socket.get("name") != TLS_SOCKET:
        return None
    cfg = socket.get("typedConfig") or {}
    common = cfg.get("commonTlsContext") or {}
    ctx = (common.get("combinedValidationContext") or {}).get("defaultValidationContext") or {}
    sans = [m.get("exact") for m in ctx.get("matchSubjectAltNames") or []]
    typed = ctx.get("matchTypedSubjectAltNames") or []
    sans += [(m.get("matcher") or {}).get("exact") for m in typed]
    return {
        "alpn": list(common.get("alpnProtocols") or []),
        "sni": cfg.get("sni"),
        "sans": sorted(s for s in sans if s),
        "client_cert": bool(common.get("tlsCertificateSdsSecretConfigs")),
    }


def endpoint_transport(dump: dict[str, Any], cname: str, ip: str) -> dict[str, Any]:
    """The transport socket Envoy uses from cluster `cname` to the endpoint at `ip`, picked as
    Envoy picks it: the first `transportSocketMatches` entry whose `match` is a subset of the
    endpoint's `envoy.transport_socket_match` metadata, else the cluster's `transportSocket`
    (none: plaintext). Returns the cluster's type, the entry's name (or `transportSocket`), the
    socket's name, whether it is Istio mutual TLS (istio_mtls), its TLS summary, and whether
    istiod sent an endpoint at `ip` at all (EDS clusters; other types resolve on their own)."""
    c = next((c for c in dump["clusters"] if c["name"] == cname), None)
    if c is None:
        return {"cluster": None, "type": None, "entry": None, "socket": None, "mtls": False,
                "tls": None, "endpoint": False}
    ctype = c.get("type") or "EDS"
    meta: dict[str, Any] = {}
    found = ctype != "EDS"
    service = (c.get("edsClusterConfig") or {}).get("serviceName") or cname
    for cla in dump.get("endpoints") or []:
        if cla.get("clusterName") != service:
            continue
        for group in cla.get("endpoints") or []:
            for ep in group.get("lbEndpoints") or []:
                sa = ((ep.get("endpoint") or {}).get("address") or {}).get("socketAddress") or {}
                if sa.get("address") == ip:
                    found = True
                    meta = ((ep.get("metadata") or {}).get("filterMetadata") or {}).get(
                        SOCKET_MATCH_FILTER) or {}
    entry, socket = "transportSocket", c.get("transportSocket")
    for m in c.get("transportSocketMatches") or []:
        if all(meta.get(k) == v for k, v in (m.get("match") or {}).items()):
            entry, socket = m.get("name"), m.get("transportSocket")
            break
    return {
        "cluster": cname,
        "type": ctype,
        "entry": entry,
        "socket": (socket or {}).get("name", "envoy.transport_sockets.raw_buffer"),
        "mtls": istio_mtls({"transportSocket": socket}),
        "tls": tls_summary(socket),
        "endpoint": found,
    }
