"""Secure by default (issue 11 part 4), read from the rendered manifests.

* Every Ray container (ray-head, ray-worker, the ray-tls init container) meets the "restricted"
  Pod Security Standard, checked field by field as the Kubernetes documentation lists it, and
  runs as the rayproject/ray image's own user (uid 1000, gid 100: USER 1000 in its Dockerfile).
* One ServiceAccount per cluster runs every Ray pod; only KubeRay's autoscaler gets its token.
* The Ray pods' AuthorizationPolicy admits, per port, exactly what the values say. The oracle
  finds each port a pod listens on from what opens it (the group's rayStartParams flags and
  env, as `ray start` reads them) and evaluates Istio's rules itself: rules ORed, a rule
  matches a peer when its principals name it and its ports hold the port.
* The optional NetworkPolicy admits the same ports, from the cluster's own pods.
The real istiod's reading of the policy is tests/mesh/test_authorization.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from authz_support import (
    GATEWAY,
    LISTED_BY,
    LISTS,
    PROMETHEUS,
    SUBMITTER,
    USER_FACING,
    expected,
)
from chart_support import CHART, RAYCLUSTER_EXAMPLES, REPO, Renderer
from meshray.render import RenderError, RenderRequest, render

# RayCluster renders (a RayJob's cluster spec is the same: tests/render/test_render_rayjob.py)
EXAMPLES = RAYCLUSTER_EXAMPLES
CASES: list[Path | None] = [None, *EXAMPLES]
IDS = ["defaults", *(p.stem for p in EXAMPLES)]
RAY_CONTAINERS = {"ray-head", "ray-worker", "ray-tls"}
PORT_FLAGS = ("port", "dashboard-port", "ray-client-server-port", "node-manager-port",
              "object-manager-port", "runtime-env-agent-port", "dashboard-agent-grpc-port",
              "dashboard-agent-listen-port", "metrics-export-port", "dashboard-grpc-port")
PORT_ENVS = ("AUTOSCALER_METRIC_PORT", "DASHBOARD_METRIC_PORT", "RAY_SERVE_DEFAULT_HTTP_PORT",
             "RAY_SERVE_DEFAULT_GRPC_PORT")


def kind(docs: list[dict[str, Any]], k: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == k]


def templates(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any], bool]]:
    """(group spec, pod template, is head) of every group of the RayCluster."""
    (rc,) = kind(docs, "RayCluster")
    out = [(rc["spec"]["headGroupSpec"], rc["spec"]["headGroupSpec"]["template"], True)]
    out += [(g, g["template"], False) for g in rc["spec"]["workerGroupSpecs"]]
    return out


# --- Pod Security Standard "restricted" ------------------------------------------------------


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The "restricted" profile's container rules (kubernetes.io/docs/concepts/security/
    pod-security-standards), for the Ray containers: a container field wins over the pod's."""
    spec = pod["spec"]
    psc = spec.get("securityContext") or {}
    out = []
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        if c["name"] not in RAY_CONTAINERS:
            continue
        sc = c.get("securityContext") or {}

        def eff(key: str, sc: dict[str, Any] = sc) -> Any:
            return sc[key] if key in sc else psc.get(key)

        if sc.get("privileged"):
            out.append(f"{c['name']}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation is not false")
        if eff("runAsNonRoot") is not True:
            out.append(f"{c['name']}: runAsNonRoot is not true")
        if eff("runAsUser") == 0:
            out.append(f"{c['name']}: runAsUser 0")
        if (eff("seccompProfile") or {}).get("type") not in {"RuntimeDefault", "Localhost"}:
            out.append(f"{c['name']}: seccompProfile is not RuntimeDefault/Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{c['name']}: capabilities.drop lacks ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{c['name']}: adds capabilities {caps['add']}")
    return out


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_every_ray_container_runs_restricted_as_the_images_user(
        render_chart: Renderer, values: Path | None) -> None:
    docs = render_chart(*([values] if values else []),
                        set_values=("rayTls.enabled=true", "ray.autoscaling=true")
                        if values is None else ())
    for _, tpl, head in templates(docs):
        assert restricted_violations(tpl) == [], head
        for c in [*tpl["spec"].get("initContainers", []), *tpl["spec"]["containers"]]:
            sc = {**(tpl["spec"].get("securityContext") or {}), **c.get("securityContext", {})}
            assert (sc.get("runAsUser"), sc.get("runAsGroup")) == (1000, 100), c["name"]
    (rc,) = kind(docs, "RayCluster")
    if rc["spec"].get("enableInTreeAutoscaling"):
        auto = {"spec": {"containers": [{"name": "ray-head", "securityContext":
                                         rc["spec"]["autoscalerOptions"]["securityContext"]}]}}
        assert restricted_violations(auto) == []  # KubeRay's autoscaler container


def test_the_restricted_check_can_fail() -> None:
    sc = {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
          "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
          "seccompProfile": {"type": "RuntimeDefault"}}
    pod = {"spec": {"containers": [{"name": "ray-head", "securityContext": sc}]}}
    assert restricted_violations(pod) == ["ray-head: adds capabilities ['NET_ADMIN']"]
    pod["spec"]["containers"][0]["securityContext"] = {}
    assert restricted_violations(pod) == [
        "ray-head: allowPrivilegeEscalation is not false", "ray-head: runAsNonRoot is not true",
        "ray-head: seccompProfile is not RuntimeDefault/Localhost",
        "ray-head: capabilities.drop lacks ALL"]


def test_a_groups_security_context_wins_key_by_key(render_chart: Renderer) -> None:
    docs = render_chart(set_values=(
        "workerGroups.gpu.securityContext.runAsUser=2000",
        "workerGroups.gpu.securityContext.capabilities.add={SYS_PTRACE}",
        "head.podSecurityContext.fsGroup=2000", "podSecurity.acknowledgeUnrestricted=true"))
    by_head = {head: tpl for _, tpl, head in templates(docs)}
    worker = by_head[False]["spec"]["containers"][0]["securityContext"]
    assert worker["runAsUser"] == 2000 and worker["allowPrivilegeEscalation"] is False
    assert worker["capabilities"] == {"drop": ["ALL"], "add": ["SYS_PTRACE"]}
    assert by_head[True]["spec"]["containers"][0]["securityContext"]["runAsUser"] == 1000
    assert by_head[True]["spec"]["securityContext"]["fsGroup"] == 2000
    assert by_head[True]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert by_head[False]["spec"]["securityContext"]["fsGroup"] == 100


def test_pod_security_can_be_turned_off(render_chart: Renderer) -> None:
    docs = render_chart(set_values=("podSecurity.enabled=false", "ray.autoscaling=true",
                                    "head.securityContext.runAsUser=1234",
                                    "podSecurity.acknowledgeUnrestricted=true"))
    for _, tpl, head in templates(docs):
        assert "securityContext" not in tpl["spec"]
        assert tpl["spec"]["containers"][0].get("securityContext") == (
            {"runAsUser": 1234} if head else None)
    (rc,) = kind(docs, "RayCluster")
    assert "autoscalerOptions" not in rc["spec"]
    # one key dropped: null removes it, the rest stays
    docs = render_chart(set_values=("podSecurity.container.runAsUser=null",))  # not restricted
    for _, tpl, _ in templates(docs):
        sc = tpl["spec"]["containers"][0]["securityContext"]
        assert "runAsUser" not in sc and sc["allowPrivilegeEscalation"] is False


def test_the_ray_tls_init_container_gets_its_groups_resources(render_chart: Renderer) -> None:
    docs = render_chart(set_values=("rayTls.enabled=true",
                                    "workerDefaults.resources.limits.cpu=3"))
    for _, tpl, _ in templates(docs):
        (init,) = tpl["spec"]["initContainers"]
        assert init["resources"] == tpl["spec"]["containers"][0]["resources"]
        assert init["securityContext"] == tpl["spec"]["containers"][0]["securityContext"]


# --- ServiceAccount --------------------------------------------------------------------------


def test_one_service_account_runs_every_ray_pod(render_chart: Renderer) -> None:
    docs = render_chart(REPO / "values-examples/multi-group.yaml", namespace="ray")
    (sa,) = kind(docs, "ServiceAccount")
    assert sa["metadata"]["namespace"] == "ray"
    assert sa["automountServiceAccountToken"] is False
    (rc,) = kind(docs, "RayCluster")
    assert rc["spec"]["enableInTreeAutoscaling"] is True  # multi-group.yaml autoscales
    for _, tpl, head in templates(docs):
        assert tpl["spec"]["serviceAccountName"] == sa["metadata"]["name"]
        # the autoscaler container KubeRay adds to the head calls the Kubernetes API
        assert tpl["spec"]["automountServiceAccountToken"] is head


@pytest.mark.parametrize(("sets", "name", "rendered"), [
    ((), "meshray-ray", True),
    (("serviceAccount.name=ray-runner",), "ray-runner", True),
    (("serviceAccount.create=false", "serviceAccount.acknowledgeShared=true"), "default", False),
    (("serviceAccount.create=false", "serviceAccount.name=existing",
      "serviceAccount.acknowledgeShared=true"), "existing", False),
])
def test_service_account_name(render_chart: Renderer, sets: tuple[str, ...], name: str,
                              rendered: bool) -> None:
    docs = render_chart(set_values=sets)
    assert [s["metadata"]["name"] for s in kind(docs, "ServiceAccount")] == (
        [name] if rendered else [])
    assert {tpl["spec"]["serviceAccountName"] for _, tpl, _ in templates(docs)} == {name}
    for _, tpl, _ in templates(docs):
        assert tpl["spec"]["automountServiceAccountToken"] is False


# --- AuthorizationPolicy ---------------------------------------------------------------------


def listening(group: dict[str, Any], tpl: dict[str, Any], head: bool) -> dict[int, str]:
    """Port -> what opens it, from the group's rayStartParams and its Ray container's env."""
    params = group["rayStartParams"]
    env = {e["name"]: e.get("value") for e in tpl["spec"]["containers"][0].get("env", [])}
    out = {int(params[f]): f for f in PORT_FLAGS if f in params}
    out.update({int(env[e]): e for e in PORT_ENVS if env.get(e)})
    if head:  # KubeRay's defaults for the head when the params leave them out
        out.setdefault(6379, "port")
    if "worker-port-list" in params:
        out.update({int(p): "worker" for p in params["worker-port-list"].split(",")})
    else:
        lo, hi = int(params["min-worker-port"]), int(params["max-worker-port"])
        out.update({p: "worker" for p in range(lo, hi + 1)})
    return out


def admitted(policies: list[dict[str, Any]], labels: dict[str, str], port: int) -> set[str]:
    """The principals ALLOW policies selecting these pod labels admit to a port; '<any>' when
    a rule admits any source."""
    out: set[str] = set()
    for p in policies:
        if p["spec"].get("targetRefs"):  # attached to a Gateway (the waypoint), not to pods
            continue
        sel = p["spec"].get("selector", {}).get("matchLabels", {})
        if p["spec"].get("action", "ALLOW") != "ALLOW" or any(
                labels.get(k) != v for k, v in sel.items()):
            continue
        for rule in p["spec"].get("rules", []):
            ops = [t["operation"] for t in rule.get("to", [])]
            if ops and not any(str(port) in op.get("ports", [str(port)])
                               and str(port) not in op.get("notPorts", []) for op in ops):
                continue
            sources = [f["source"] for f in rule.get("from", [])]
            if not sources or any(not s.get("principals") for s in sources):
                out.add("<any>")
            for s in sources:
                out |= set(s.get("principals", []))
    return out


def waypoint_principals(docs: list[dict[str, Any]], ns: str) -> set[str]:
    """The identity of an ambient waypoint the render asks for: istiod runs a Gateway of class
    istio-waypoint under its own name, as its ServiceAccount too. Through it, the Ray pods'
    ztunnel sees that identity instead of the caller's."""
    return {f"cluster.local/ns/{ns}/sa/{g['metadata']['name']}" for g in kind(docs, "Gateway")
            if g["spec"].get("gatewayClassName") == "istio-waypoint"}


def check_policy(docs: list[dict[str, Any]], ns: str, listed: dict[str, str],
                 extra: dict[str, set[str]] | None = None) -> None:
    policies = kind(docs, "AuthorizationPolicy")
    (rc,) = kind(docs, "RayCluster")
    for group, tpl, head in templates(docs):
        labels = {"ray.io/cluster": rc["metadata"]["name"],
                  "ray.io/node-type": "head" if head else "worker"}
        own = f"cluster.local/ns/{ns}/sa/{tpl['spec']['serviceAccountName']}"
        ports = listening(group, tpl, head)
        want = expected(ports, own, listed)
        for p in ports:
            want[p] |= waypoint_principals(docs, ns)
        if head:
            for p, o in ports.items():
                want[p] |= (extra or {}).get(o, set())
        got = {p: admitted(policies, labels, p) for p in ports}
        assert {p: g for p, g in got.items() if g != want[p]} == {}, (head, want)
        # a port outside the map: nobody but the cluster's own identities (their rule names
        # the ports it leaves out, so its size does not grow with the worker ports)
        assert admitted(policies, labels, 9) <= {own} | waypoint_principals(docs, ns)


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_the_policy_admits_each_port_what_the_values_say(render_chart: Renderer,
                                                         values: Path | None) -> None:
    docs = render_chart(*([values] if values else []), namespace="ray")
    check_policy(docs, "ray", {}, gateway_admits(docs, values))


def gateway_admits(docs: list[dict[str, Any]], values: Path | None) -> dict[str, set[str]]:
    """What opens a head port -> the ingress gateway's principal, for the ports its routes
    reach (the backend ports of the gateway Service, followed to their target ports), plus the
    dashboard and client when the values turn the gateway's own authorizationPolicy on."""
    routes = [r for k in ("HTTPRoute", "GRPCRoute", "TLSRoute") for r in kind(docs, k)]
    if routes:
        # Istio's automated deployment of a Gateway runs as <name>-istio in its namespace
        ref = routes[0]["spec"]["parentRefs"][0]
        ns = ref.get("namespace", routes[0]["metadata"]["namespace"])
        principal = f"cluster.local/ns/{ns}/sa/{ref['name']}-istio"
        backends = [b["port"] for r in routes for rule in r["spec"]["rules"]
                    for b in rule["backendRefs"]]
    elif kind(docs, "VirtualService"):
        principal = GATEWAY
        backends = [d["destination"]["port"]["number"] for vs in kind(docs, "VirtualService")
                    for section in ("http", "tls", "tcp") for route in vs["spec"].get(section, [])
                    for d in route["route"]]
    else:
        return {}
    svc_ports = {p["port"]: int(p.get("targetPort", p["port"])) for s in kind(docs, "Service")
                 if s["metadata"]["name"].endswith("-gateway-svc") for p in s["spec"]["ports"]}
    group, tpl, _ = templates(docs)[0]
    openers = listening(group, tpl, True)
    out = {openers[svc_ports[b]]: {principal} for b in backends}
    v = yaml.safe_load(values.read_text()) if values else {}
    if any(((v or {}).get(k) or {}).get("authorizationPolicy", {}).get("enabled")
           for k in ("gateway", "gatewayAPI")):
        out.update({o: {principal} for o in USER_FACING})
    return out


def test_the_waypoint_checks_what_the_pods_policy_would(render_chart: Renderer) -> None:
    """Ambient with a waypoint: the policy attached to the waypoint (targetRefs) admits each
    port exactly what the Ray pods' own policy admits to it, the waypoint itself aside."""
    docs = render_chart(REPO / "values-examples/ambient-waypoint.yaml", namespace="ray",
                        set_values=("mesh.authorizationPolicy.metricsPrincipals={x/ns/m/sa/p}",))
    (wp,) = waypoint_principals(docs, "ray")
    by_target = [p for p in kind(docs, "AuthorizationPolicy") if p["spec"].get("targetRefs")]
    (attached,) = by_target
    (gw,) = [g for g in kind(docs, "Gateway")
             if g["spec"].get("gatewayClassName") == "istio-waypoint"]
    assert attached["spec"]["targetRefs"] == [{"kind": "Gateway", "group":
                                               "gateway.networking.k8s.io",
                                               "name": gw["metadata"]["name"]}]
    as_pods = {**attached, "spec": {**attached["spec"], "selector": {"matchLabels": {}}}}
    del as_pods["spec"]["targetRefs"]
    (rc,) = kind(docs, "RayCluster")
    listed = set()
    for group, tpl, head in templates(docs):
        labels = {"ray.io/cluster": rc["metadata"]["name"],
                  "ray.io/node-type": "head" if head else "worker"}
        for port in listening(group, tpl, head):
            on_pods = admitted(kind(docs, "AuthorizationPolicy"), labels, port) - {wp}
            assert admitted([as_pods], labels, port) == on_pods, port
            if "x/ns/m/sa/p" in on_pods:
                listed.add(port)
    assert 8080 in listed and 6379 not in listed  # the metrics principal: metrics ports only


def test_listed_principals_reach_their_ports_only(render_chart: Renderer) -> None:
    docs = render_chart(set_values=LISTS, namespace="ray")
    check_policy(docs, "ray", LISTED_BY)
    (policy,) = kind(docs, "AuthorizationPolicy")
    for rule in policy["spec"]["rules"]:  # every rule names its sources and its ports
        op = rule["to"][0]["operation"]
        assert rule["from"][0]["source"]["principals"] and (op.get("ports") or op.get("notPorts"))


def test_the_policy_check_can_fail(render_chart: Renderer) -> None:
    """The oracle sees an over-broad policy: a rule admitting any source to the dashboard."""
    docs = render_chart(namespace="ray")
    (policy,) = kind(docs, "AuthorizationPolicy")
    policy["spec"]["rules"].append({"to": [{"operation": {"ports": ["8265"]}}]})
    with pytest.raises(AssertionError):
        check_policy(docs, "ray", {})


def test_group_service_accounts_are_the_clusters_identities(render_chart: Renderer) -> None:
    docs = render_chart(set_values=("workerGroups.gpu.serviceAccountName=gpu-runner",
                                    "workerGroups.cpu.replicas=1",
                                    "serviceAccount.acknowledgeShared=true"), namespace="ray")
    (policy,) = kind(docs, "AuthorizationPolicy")
    assert policy["spec"]["rules"][0]["from"][0]["source"]["principals"] == [
        "cluster.local/ns/ray/sa/gpu-runner", "cluster.local/ns/ray/sa/meshray-ray"]


def test_the_trust_domain_writes_every_principal(render_chart: Renderer) -> None:
    docs = render_chart(REPO / "values-examples/istio-gateway.yaml",
                        set_values=("mesh.trustDomain=corp.example",))
    principals = [pr for p in kind(docs, "AuthorizationPolicy")
                  for r in p["spec"]["rules"] for f in r.get("from", [])
                  for pr in f["source"].get("principals", [])]
    assert principals and all(pr.startswith("corp.example/ns/") for pr in principals)


def test_policy_off(render_chart: Renderer) -> None:
    docs = render_chart(set_values=("mesh.authorizationPolicy.enabled=false",))
    assert kind(docs, "AuthorizationPolicy") == []


@pytest.mark.parametrize("principal", ["spiffe://cluster.local/ns/a/sa/b", "*/ns/a/sa/*",
                                       "cluster.local/ns/a/sa/b c"])
def test_a_principal_istiod_cannot_match_is_refused(principal: str) -> None:
    with pytest.raises(RenderError) as err:
        render(RenderRequest(set_values=(
            f"mesh.authorizationPolicy.clientPrincipals={{{principal}}}",)))
    assert "mesh/authorizationPolicy/clientPrincipals/0" in err.value.message, err.value.message


# --- NetworkPolicy ---------------------------------------------------------------------------


def netpol_ports(rule: dict[str, Any]) -> set[int]:
    out: set[int] = set()
    for p in rule["ports"]:
        assert p.get("protocol", "TCP") == "TCP"
        out |= set(range(int(p["port"]), int(p.get("endPort", p["port"])) + 1))
    return out


def test_network_policy_admits_the_policys_ports(render_chart: Renderer) -> None:
    docs = render_chart(REPO / "values-examples/ray-serve.yaml", set_values=(
        *LISTS[1:], "networkPolicy.enabled=true"), namespace="ray")
    (np,) = kind(docs, "NetworkPolicy")
    (ap,) = kind(docs, "AuthorizationPolicy")
    assert np["spec"]["podSelector"] == ap["spec"]["selector"]
    assert np["spec"]["policyTypes"] == ["Ingress"]
    (own,) = np["spec"]["ingress"]  # no peers listed: only the cluster's own pods
    assert own["from"] == [{"podSelector": {"matchLabels": ap["spec"]["selector"]["matchLabels"]}}]
    # the ports the pods listen on (what opens them), the user-facing ones aside: the
    # AuthorizationPolicy's own rule leaves exactly those out (notPorts), the NetworkPolicy
    # lists the rest
    opened = {p: o for group, tpl, head in templates(docs)
              for p, o in listening(group, tpl, head).items()}
    facing = {p for p, o in opened.items() if o in USER_FACING}
    left_out = {int(p) for p in ap["spec"]["rules"][0]["to"][0]["operation"]["notPorts"]}
    assert left_out == facing
    assert netpol_ports(own) == set(opened) - facing


def test_network_policy_peers_get_their_kinds_ports(render_chart: Renderer) -> None:
    docs = render_chart(set_values=(
        "networkPolicy.enabled=true", "serve.enabled=true",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=obs",
        "networkPolicy.dashboardFrom[0].podSelector.matchLabels.app=submitter",
        *LISTS[1:]), namespace="ray")
    (np,) = kind(docs, "NetworkPolicy")
    (ap,) = kind(docs, "AuthorizationPolicy")
    by_peer = {str(r["from"]): netpol_ports(r) for r in np["spec"]["ingress"]}
    ap_by_principal = {r["from"][0]["source"]["principals"][0]:
                       {int(p) for p in r["to"][0]["operation"]["ports"]}
                       for r in ap["spec"]["rules"][1:]}
    assert by_peer[str([{"namespaceSelector": {"matchLabels": {"team": "obs"}}}])] == \
        ap_by_principal[PROMETHEUS]
    assert by_peer[str([{"podSelector": {"matchLabels": {"app": "submitter"}}}])] == \
        ap_by_principal[SUBMITTER]
    # the cluster's pods, metrics, dashboard: no rule for the peer lists left empty
    assert [r["from"] for r in np["spec"]["ingress"]] == [
        [{"podSelector": {"matchLabels": ap["spec"]["selector"]["matchLabels"]}}],
        [{"podSelector": {"matchLabels": {"app": "submitter"}}}],
        [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}]]


def test_no_network_policy_by_default(render_chart: Renderer) -> None:
    assert kind(render_chart(), "NetworkPolicy") == []


# --- Acknowledged risks ----------------------------------------------------------------------

ACK_ANNOTATION = "meshray.io/acknowledged"
RISKY = ("workerGroups.gpu.securityContext.capabilities.add={IPC_LOCK}",
         "serviceAccount.create=false", "serviceAccount.name=shared-runner",
         "workerDefaults.annotations.traffic\\.sidecar\\.istio\\.io/excludeInboundPorts=istio-ports")


@pytest.mark.parametrize(("acks", "ids"), [
    (("podSecurity.acknowledgeUnrestricted=true", "serviceAccount.acknowledgeShared=true",
      "mesh.acknowledgeCaptureOverrides=true"),
     "mesh-capture,shared-identity,unrestricted-pods"),
])
def test_acknowledged_risks_are_written_on_the_raycluster(render_chart: Renderer,
                                                          acks: tuple[str, ...],
                                                          ids: str) -> None:
    """Each protection the values switch off with its acknowledgement is named on the
    RayCluster (meshray.io/acknowledged), where `meshray audit` and a reviewer see it; the
    chart's defaults carry none, and an acknowledgement with nothing to acknowledge adds none."""
    (rc,) = kind(render_chart(set_values=RISKY + acks), "RayCluster")
    assert rc["metadata"]["annotations"][ACK_ANNOTATION] == ids
    (rc,) = kind(render_chart(set_values=acks), "RayCluster")
    assert ACK_ANNOTATION not in rc["metadata"]["annotations"]


@pytest.mark.parametrize("missing", range(3))
def test_each_risk_needs_its_own_acknowledgement(render_chart: Renderer, missing: int) -> None:
    """Without one of the three acknowledgements the chart refuses, naming that key."""
    acks = ["podSecurity.acknowledgeUnrestricted=true", "serviceAccount.acknowledgeShared=true",
            "mesh.acknowledgeCaptureOverrides=true"]
    dropped = acks.pop(missing)
    with pytest.raises(RenderError) as failed:
        render_chart(set_values=RISKY + tuple(acks))
    assert dropped.split("=")[0] in str(failed.value)


@pytest.mark.parametrize(
    ("sets", "secret"),
    [
        ((), "meshray"),  # KubeRay names the Secret after the RayCluster
        (("rayAuth.secretName=team-token",), "team-token"),
        (("workload.kind=RayJob", "rayJob.entrypoint=python job.py"),
         "$(kubectl get rayjob meshray -n ray -o jsonpath='{.status.rayClusterName}')"),
    ],
    ids=["generated", "named", "rayjob"],
)
def test_notes_say_where_the_ray_token_is(sets: tuple[str, ...], secret: str) -> None:
    """With rayAuth.enabled, NOTES name the Secret KubeRay creates (after the RayCluster, a
    RayJob's generated one) or the one the values name, and how to export the token; without
    it they say nothing of a token."""
    def notes(*extra: str) -> str:
        args = [a for s in extra for a in ("--set", s)]
        out = subprocess.run([str(REPO / "bin" / "helm"), "install", "meshray", str(CHART),
                              "--dry-run=client", "-n", "ray", *args],
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout.split("NOTES:", 1)[1]

    text = notes("rayAuth.enabled=true", *sets)
    assert f"key auth_token of Secret {secret}" in text, text
    assert f"kubectl get secret {secret} -n ray -o jsonpath='{{.data.auth_token}}'" in text
    assert "RAY_AUTH_TOKEN" not in notes(*sets)
