"""What the real istiod programs into a Gateway API gateway for the chart's routes.

The chart is installed with a Gateway of class istio (gatewayAPI.*) on the local control plane
with the Gateway API v1.5.0 CRDs and the real KubeRay operator v1.6.2. istiod runs the Gateway
as a deployment named `<gateway>-istio`; the control plane has no deployment controller, so the
test plays that deployment: a Pod labelled `gateway.networking.k8s.io/gateway-name` and a
Service `<gateway>-istio` selecting it (what istiod's deployment controller renders), which
istiod needs to tie the Gateway to a proxy (`internal.istio.io/gateway-service`). Then
bin/meshray-xds asks istiod for the xDS of that Pod as a router node
(`router~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`) and the test follows each host through the
listener on the gateway port, its route configuration, to the cluster and its endpoints.

istiod drops an HTTPS listener whose certificate Secret it cannot find, so the test creates the
Secret the values name (the control plane's own test certificate). Upstream mTLS applies to an
endpoint only when its Pod carries `security.istio.io/tlsMode: istio`, which Istio's injector
adds (the local control plane has no webhook): the test adds it to the head Pod, after checking
that without it istiod sends plaintext (the negative control of the mTLS claim).

The oracle: hosts from the values; the port each host must reach from the head Pod the
operator made (`ray start` flags, tests/cluster/podcmd.py); mTLS from the cluster's transport
socket for the endpoint's tlsMode, its SAN check against the Ray pods' service account; HTTP/2
from the cluster's protocol options.

Negative control: a Pod of the same namespace without the gateway label gets none of it.
A second release with Ray-native TLS and a TLSRoute: the gateway does not terminate TLS, it
passes the stream by SNI to the client port (tcp_proxy).
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube import HELMS, Helm, wait_for
from kubernetes import client
from podcmd import ray_start
from test_sidecar_config import install
from xds_support import XDS, Mesh, route_cluster

REPO = Path(__file__).resolve().parents[2]
NS = "gwapi"
RELEASE_VALUES = REPO / "values-examples" / "gatewayapi-http.yaml"
CLIENT_HOST = "ray-client.example.com"
EXTRA = ("--set", "gatewayAPI.routes.client.enabled=true",
         "--set", f"gatewayAPI.routes.client.host={CLIENT_HOST}")
TLS_SOCKET = "envoy.transport_sockets.tls"
HCM = "envoy.filters.network.http_connection_manager"
TCP = "envoy.filters.network.tcp_proxy"


def router_config(mesh: Mesh, pod: Any) -> dict[str, Any]:
    res = subprocess.run(
        [str(XDS), "-addr", mesh.xds_addr, "-type", "router", "-pod", pod.metadata.name,
         "-namespace", pod.metadata.namespace, "-ip", pod.status.pod_ip,
         "-labels", json.dumps(pod.metadata.labels or {}),
         "-service-account", pod.spec.service_account_name or "default"],
        capture_output=True, text=True, timeout=90, check=False)
    assert res.returncode == 0, res.stderr
    return dict(json.loads(res.stdout))


def gateway_pod(mesh: Mesh, gw: str, name: str, labelled: bool, ns: str = NS) -> Any:
    """The Pod istiod's deployment controller would run for Gateway `gw`, and its Service."""
    core = client.CoreV1Api(mesh.api)
    deployment = f"{gw}-istio"
    labels = {"app": name}
    if labelled:
        labels["gateway.networking.k8s.io/gateway-name"] = gw
        try:
            core.create_namespaced_service_account(ns, {"metadata": {"name": deployment}})
        except client.ApiException as e:  # already made by a run of the other case
            assert e.status == 409, e
        try:
            core.create_namespaced_service(ns, {
                "metadata": {"name": deployment},
                "spec": {"selector": {"gateway.networking.k8s.io/gateway-name": gw},
                         "ports": [{"name": "https", "port": 443, "targetPort": 443}]}})
        except client.ApiException as e:
            assert e.status == 409, e
    core.create_namespaced_pod(ns, {
        "metadata": {"name": name, "labels": labels},
        "spec": {"serviceAccountName": deployment if labelled else "default",
                 "containers": [{"name": "istio-proxy", "image": "istio/proxyv2",
                                 "ports": [{"containerPort": 443}]}]}})
    return wait_for(f"{name} running", lambda: (
        p if (p := core.read_namespaced_pod(name, ns)).status.pod_ip
        and p.status.phase == "Running" else None), timeout=60)


def listener_on(dump: dict[str, Any], port: int) -> dict[str, Any] | None:
    return next((li for li in dump.get("listeners") or []
                 if li["address"]["socketAddress"].get("portValue") == port), None)


def routes_by_host(dump: dict[str, Any], listener: dict[str, Any]) -> dict[str, str]:
    """host -> cluster, through each HTTPS filter chain's route configuration (by SNI)."""
    configs = {r["name"]: r for r in dump.get("routes") or []}
    out: dict[str, str] = {}
    for fc in listener["filterChains"]:
        hosts = fc.get("filterChainMatch", {}).get("serverNames") or []
        for f in fc["filters"]:
            if f["name"] != HCM:
                continue
            rc = configs[f["typedConfig"]["rds"]["routeConfigName"]]
            for host in hosts:
                cluster = route_cluster(rc, host)
                if cluster:
                    out[host] = cluster
    return out


def cluster_by_name(dump: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in dump["clusters"] if c["name"] == name)


def istio_mtls(socket: dict[str, Any] | None, peer: str) -> bool:
    """Istio mTLS: a TLS transport socket with the proxy's own certificate (SDS `default`),
    ALPN istio, and the peer's SPIFFE identity checked."""
    if not socket or socket.get("name") != TLS_SOCKET:
        return False
    common = socket["typedConfig"].get("commonTlsContext", {})
    certs = common.get("tlsCertificateSdsSecretConfigs") or []
    sans = common.get("combinedValidationContext", {}).get("defaultValidationContext", {}).get(
        "matchSubjectAltNames") or []
    return (any(c.get("name") == "default" for c in certs)
            and "istio" in (common.get("alpnProtocols") or [])
            and {"exact": f"spiffe://{peer}"} in sans)


def http2_upstream(cluster: dict[str, Any]) -> bool:
    opts = cluster.get("typedExtensionProtocolOptions", {}).get(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {})
    return "http2ProtocolOptions" in opts.get("explicitHttpConfig", {}) or \
        "http2ProtocolOptions" in opts.get("useDownstreamProtocolConfig", {})


def tls_secret(mesh: Mesh, ns: str, name: str) -> None:
    """The certificate Secret the Gateway's HTTPS listeners name: the control plane's test
    certificate (istiod only checks that it parses)."""
    certs = Path(mesh.cp.certs)
    data = {"tls.crt": (certs / "apiserver.crt").read_bytes(),
            "tls.key": (certs / "apiserver.key").read_bytes()}
    client.CoreV1Api(mesh.api).create_namespaced_secret(ns, {
        "metadata": {"name": name}, "type": "kubernetes.io/tls",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()}})


def release(mesh: Mesh, ns: str, case: str, extra: tuple[str, ...]) -> dict[str, Any]:
    pods = install(mesh, ns, case, extra)
    (head,) = [p for p in pods if p.metadata.labels["ray.io/node-type"] == "head"]
    rendered = Helm(HELMS["helm4"], mesh.kubeconfig).run(
        "get", "manifest", "m", "-n", ns).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    (gw,) = [d for d in docs if d["kind"] == "Gateway"]
    return {"head": head, "gateway": gw["metadata"]["name"], "docs": docs, "ns": ns}


@pytest.fixture(scope="module")
def installed(mesh: Mesh) -> dict[str, Any]:
    out = release(mesh, NS, "ex-gatewayapi-http", EXTRA)
    secret = yaml.safe_load(RELEASE_VALUES.read_text())["gatewayAPI"]["https"]
    tls_secret(mesh, NS, secret["certificateSecret"])
    return out


def endpoint_tls_modes(dump: dict[str, Any], cluster: str) -> set[str | None]:
    eps = next((e for e in dump.get("endpoints") or [] if e["clusterName"] == cluster), {})
    return {(lb.get("metadata") or {}).get("filterMetadata", {})
            .get("envoy.transport_socket_match", {}).get("tlsMode")
            for ep in eps.get("endpoints") or [] for lb in ep.get("lbEndpoints") or []}


def socket_for(cluster: dict[str, Any], tls_mode: str | None) -> dict[str, Any] | None:
    """The transport socket Envoy picks for an endpoint of that tlsMode."""
    for m in cluster.get("transportSocketMatches") or []:
        if all({"tlsMode": tls_mode}.get(k) == v for k, v in (m.get("match") or {}).items()):
            return dict(m.get("transportSocket") or {})
    return cluster.get("transportSocket")


def settled(mesh: Mesh, pod: Any, want: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 45
    while True:
        dump = router_config(mesh, pod)
        li = listener_on(dump, 443)
        if (li and want <= set(routes_by_host(dump, li))) or time.monotonic() > deadline:
            return dump
        time.sleep(1)


def test_istiod_routes_each_host_to_its_ray_port_with_mtls(mesh: Mesh,
                                                           installed: dict[str, Any]) -> None:
    values = yaml.safe_load(RELEASE_VALUES.read_text())["gatewayAPI"]
    hosts = {"dashboard": values["routes"]["dashboard"]["host"],
             "serve": values["routes"]["serve"]["host"], "client": CLIENT_HOST}
    core = client.CoreV1Api(mesh.api)
    head = installed["head"]
    rs = ray_start(core, head)
    listen = {"dashboard": int(rs.params["dashboard-port"]),
              "client": int(rs.params["ray-client-server-port"]),
              "serve": int(rs.env["RAY_SERVE_DEFAULT_HTTP_PORT"])}
    peer = f"cluster.local/ns/{NS}/sa/{head.spec.service_account_name}"
    pod = gateway_pod(mesh, installed["gateway"], "gw-0", labelled=True)
    dump = settled(mesh, pod, set(hosts.values()))
    li = listener_on(dump, 443)
    assert li is not None, [x["name"] for x in dump.get("listeners") or []]
    got = routes_by_host(dump, li)
    print("gateway 0.0.0.0_443, host -> cluster:", json.dumps(got, indent=1))
    for name, host in hosts.items():
        cluster = got.get(host)
        assert cluster, (host, got)
        direction, port, _, svc = cluster.split("|")
        assert direction == "outbound" and int(port) == listen[name], (host, cluster, listen)
        assert svc.endswith(f"-gateway-svc.{NS}.svc.cluster.local"), svc
        c = cluster_by_name(dump, cluster)
        assert http2_upstream(c) == (name == "client"), (cluster, name)
        # Control: the head Pod has no tlsMode label yet, so istiod sends it plaintext.
        assert endpoint_tls_modes(dump, cluster) == {None}, cluster
        assert not istio_mtls(socket_for(c, None), peer)
    # Each HTTPS chain terminates TLS with the values' certificate Secret, offering h2 (gRPC).
    for fc in li["filterChains"]:
        ctx = fc["transportSocket"]["typedConfig"]["commonTlsContext"]
        sds = [x["name"] for x in ctx["tlsCertificateSdsSecretConfigs"]]
        assert sds == [f"kubernetes-gateway://{NS}/{values['https']['certificateSecret']}"], sds
        assert "h2" in ctx["alpnProtocols"]
    # What the injector adds to the head Pod: then every routed cluster is Istio mTLS to the
    # head's service account, and the endpoints are the head Pod alone.
    core.patch_namespaced_pod(head.metadata.name, NS, {
        "metadata": {"labels": {"security.istio.io/tlsMode": "istio"}}})
    deadline = time.monotonic() + 45
    while any(endpoint_tls_modes(dump, c) != {"istio"} for c in got.values()):
        assert time.monotonic() < deadline, "istiod never saw the tlsMode label"
        time.sleep(1)
        dump = router_config(mesh, pod)
    eps = {e["clusterName"]: e for e in dump.get("endpoints") or []}
    for name, cluster in got.items():
        c = cluster_by_name(dump, cluster)
        assert istio_mtls(socket_for(c, "istio"), peer), (name, cluster)
        addrs = {(lb["endpoint"]["address"]["socketAddress"]["address"],
                  lb["endpoint"]["address"]["socketAddress"]["portValue"])
                 for ep in eps[cluster].get("endpoints") or []
                 for lb in ep.get("lbEndpoints") or []}
        assert addrs == {(head.status.pod_ip, int(cluster.split("|")[1]))}, (cluster, addrs)


def test_tls_passthrough_to_ray_native_tls(mesh: Mesh, installed: dict[str, Any]) -> None:
    ns = "gwtls"
    rel = release(mesh, ns, "defaults", (
        "--set", "clusterName=ray-tls", "--set", "rayTls.enabled=true",
        "--set", "gatewayAPI.enabled=true", "--set", "gatewayAPI.routes.client.enabled=true",
        "--set", f"gatewayAPI.routes.client.host={CLIENT_HOST}",
        "--set", "gatewayAPI.routes.client.mode=passthrough"))
    listen = int(ray_start(client.CoreV1Api(mesh.api), rel["head"]).params[
        "ray-client-server-port"])
    pod = gateway_pod(mesh, rel["gateway"], "gw-0", labelled=True, ns=ns)
    deadline = time.monotonic() + 45
    while (li := listener_on(dump := router_config(mesh, pod), 443)) is None:
        assert time.monotonic() < deadline, [x["name"] for x in dump.get("listeners") or []]
        time.sleep(1)
    (fc,) = li["filterChains"]
    assert fc["filterChainMatch"]["serverNames"] == [CLIENT_HOST]
    assert "transportSocket" not in fc  # TLS is not terminated at the gateway
    (f,) = fc["filters"]
    assert f["name"] == TCP
    cluster = f["typedConfig"]["cluster"]
    print("gateway 0.0.0.0_443 (passthrough):", CLIENT_HOST, "->", cluster)
    assert cluster == f"outbound|{listen}||ray-tls-gateway-svc.{ns}.svc.cluster.local"


def test_a_pod_that_is_not_the_gateway_gets_no_routes(mesh: Mesh,
                                                       installed: dict[str, Any]) -> None:
    pod = gateway_pod(mesh, installed["gateway"], "not-gw", labelled=False)
    dump = router_config(mesh, pod)
    assert listener_on(dump, 443) is None
    assert not any("gateway-svc" in (r.get("name") or "") for r in dump.get("routes") or [])
