"""Istio AuthorizationPolicies and Kubernetes NetworkPolicies around Ray pods: does Ray still
reach its own ports, and does anyone else reach them who should not.

Istio's semantics (AuthorizationPolicy reference, security.istio.io v1/v1beta1), as modelled:

* Scope: a policy applies to workloads in its own namespace; in the root namespace to every
  namespace. ``spec.selector.matchLabels`` narrows it to the pods with those labels (in the
  root namespace: in all namespaces); no selector and no ``targetRef(s)``: every workload of
  the scope. ``targetRef``/``targetRefs`` attach a policy to a Gateway or (ambient) a waypoint,
  never to a sidecar workload: such policies are not about Ray's sidecars and are skipped.
* Actions: CUSTOM, then DENY, then ALLOW. A request matched by a DENY rule is denied. When no
  ALLOW policy applies to a workload every request is allowed; **as soon as one ALLOW policy
  applies, every request that no ALLOW rule matches is denied**, so an ALLOW policy that forgets
  one of Ray's ports makes Ray hang on it. AUDIT decides nothing; CUSTOM delegates to an
  external authorizer (not modelled).
* Rules: ``rules`` are ORed; a policy without rules matches nothing (ALLOW with no rules: deny
  everything). Inside a rule, ``from``, ``to`` and ``when`` are ANDed, the entries of each list
  are ORed, and the fields inside one ``source`` or ``operation`` are ANDed. A missing ``from``
  is any source, a missing ``to`` any operation, an empty rule ``{}`` matches everything. So a
  rule ``from: principals`` and another rule ``to: ports`` admit ANY source to those ports
  (REFERENCE §4): the second rule is matched alone.
* Protocols: a port's filter chain is L7 (HTTP) when the Services selecting the pod declare it
  http, http2, grpc or grpc-web (appProtocol, else the name prefix); tcp, tls and the other L4
  protocols get a TCP chain. On a TCP chain HTTP-only fields (``hosts``, ``methods``, ``paths``,
  ``requestPrincipals`` and their ``not`` forms, ``when`` keys ``request.headers[...]`` and
  ``request.auth.*``) cannot be evaluated: an ALLOW rule containing them never matches, a DENY
  rule containing them matches as if they were absent (denies more than written). KubeRay's
  ``<cluster>-head-svc`` declares every port ``appProtocol: tcp`` (REFERENCE §2).
* ``principals: ["*"]`` (and ``namespaces: ["*"]``) match any authenticated peer: with STRICT
  mTLS, any workload of the mesh. Negative fields alone (``notPrincipals``...) admit everyone
  else, so they do not restrict the source either.

NetworkPolicies (networking.k8s.io/v1): a pod selected by any policy whose ``policyTypes``
include Ingress (the default) accepts only the ingress some policy's rule admits; rules are
unions. A rule with no ``from`` admits every source, with no ``ports`` every port; a ``from``
peer with a ``podSelector`` matches pods of the policy's namespace (or of the namespaces its
``namespaceSelector`` picks, assumed to include the cluster's own when it names labels we
cannot see); an ``ipBlock`` is assumed to hold the pod network (pod IPs are not in the input).
Named ports resolve through the Ray container's ``ports``.

Which ports Ray needs: every port of a group's model (``raymodel``) except the dashboard and
the Ray Client, which only users and gateways dial (closing them is a choice, not a hang); the
autoscaler and dashboard metrics ports and Serve's proxies only when pinned through env.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..manifests import Manifest
from ..raymodel import Cluster, Group, as_int, compress
from ..services import declared_protocol
from .context import Context
from .findings import ERROR, WARNING, Check
from .raypods import injection_off

AUTHZ_PORT_DENIED = Check(
    "authz-port-denied", ERROR,
    "an ALLOW AuthorizationPolicy selects Ray pods but admits no one to a Ray port (Ray hangs)")
AUTHZ_ANY_SOURCE = Check(
    "authz-any-source", WARNING, "an ALLOW rule admits any source to Ray's internal ports")
AUTHZ_DASHBOARD_OPEN = Check(
    "authz-dashboard-open", ERROR,
    "an ALLOW rule admits any source to the dashboard/Jobs API or the Ray Client")
AUTHZ_HTTP_ON_TCP = Check(
    "authz-http-on-tcp", ERROR,
    "HTTP-only fields in a rule for TCP ports: ALLOW never matches (DENY: denies all, warning)")
NETPOL_PORT_BLOCKED = Check(
    "netpol-port-blocked", ERROR,
    "a NetworkPolicy selecting Ray pods does not admit a Ray port from the cluster's pods")

CHECKS = (AUTHZ_PORT_DENIED, AUTHZ_ANY_SOURCE, AUTHZ_DASHBOARD_OPEN, AUTHZ_HTTP_ON_TCP,
          NETPOL_PORT_BLOCKED)

USER_FACING = ("dashboard-port", "ray-client-server-port")
_METRICS = ("metrics-export-port", "autoscaler-metrics", "dashboard-metrics")
_L7 = {"http", "http2", "grpc", "grpc-web"}  # the rest (tcp, tls, https...) get a TCP chain
_HTTP_SOURCE = ("requestPrincipals", "notRequestPrincipals")
_HTTP_OPERATION = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")
_RESTRICTING_SOURCE = ("principals", "namespaces", "ipBlocks", "remoteIpBlocks",
                       "requestPrincipals")
_SOURCE_KEYS = ("source.principal", "source.namespace", "source.ip", "remote.ip",
                "request.auth.principal")


def is_authz(m: Manifest) -> bool:
    return m.kind == "AuthorizationPolicy" and m.api_group == "security.istio.io"


def is_netpol(m: Manifest) -> bool:
    return m.kind == "NetworkPolicy" and m.api_group == "networking.k8s.io"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strs(value: Any) -> list[str]:
    return [str(v) for v in _list(value)]


def ray_ports(g: Group) -> dict[int, str]:
    """Port -> component name of the ports a group's pods need reachable from their peers."""
    out: dict[int, str] = {}
    for use in g.ports:
        if use.name in USER_FACING:
            continue
        if use.component.env is not None and not use.pinned:
            continue  # autoscaler/dashboard metrics and Serve proxies: only when pinned
        out.setdefault(use.port, use.name)
    for p in g.worker_ports:
        out.setdefault(p, "worker-port")
    return out


def user_ports(g: Group) -> dict[int, str]:
    """Port -> component of the head's dashboard (Jobs API) and Ray Client."""
    return {u.port: u.name for u in g.ports if u.name in USER_FACING}


@dataclass
class Policy:
    manifest: Manifest
    namespace: str

    @property
    def spec(self) -> dict[str, Any]:
        return _dict(self.manifest.obj.get("spec"))

    @property
    def action(self) -> str:
        return str(self.spec.get("action") or "ALLOW").upper()

    @property
    def targeted(self) -> bool:
        return bool(self.spec.get("targetRef") or self.spec.get("targetRefs"))

    @property
    def labels(self) -> dict[str, str]:
        labels = _dict(_dict(self.spec.get("selector")).get("matchLabels"))
        return {str(k): str(v) for k, v in labels.items()}

    def rules(self) -> list[tuple[int, dict[str, Any]]]:
        return [(i, r) for i, r in enumerate(_list(self.spec.get("rules"))) if isinstance(r, dict)]

    def applies(self, ctx: Context, c: Cluster, g: Group) -> bool:
        if self.targeted or self.namespace not in {c.namespace, ctx.root_namespace}:
            return False
        pod = g.pod_labels(c.name)
        return all(pod.get(k) == v for k, v in self.labels.items())


def _operations(rule: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rule's operations; None when it has no ``to`` (any operation)."""
    to = _list(rule.get("to"))
    if not to:
        return None
    return [_dict(_dict(t).get("operation")) for t in to]


def _op_admits(op: dict[str, Any], port: int) -> bool:
    ports, not_ports = _strs(op.get("ports")), _strs(op.get("notPorts"))
    if ports and str(port) not in ports:
        return False
    return str(port) not in not_ports


def rule_ports(rule: dict[str, Any], ports: set[int]) -> set[int]:
    """The ports among ``ports`` a rule's ``to`` matches (every one without ``to``)."""
    ops = _operations(rule)
    if ops is None:
        return set(ports)
    return {p for p in ports if any(_op_admits(op, p) for op in ops)}


def _open_source(source: dict[str, Any]) -> bool:
    for key in _RESTRICTING_SOURCE:
        values = _strs(source.get(key))
        if values and "*" not in values:
            return False
    return True


def any_source(rule: dict[str, Any]) -> bool:
    """The rule admits any peer: no ``from``, or one source that restricts nothing, and no
    ``when`` condition on the peer's identity or address."""
    for cond in _list(rule.get("when")):
        cond = _dict(cond)
        key = str(cond.get("key") or "")
        values = _strs(cond.get("values"))
        if key in _SOURCE_KEYS and values and "*" not in values:
            return False
    sources = _list(rule.get("from"))
    return not sources or any(_open_source(_dict(_dict(f).get("source"))) for f in sources)


def http_fields(rule: dict[str, Any]) -> list[str]:
    """The HTTP-only fields a rule uses, as paths inside the rule."""
    out: list[str] = []
    for i, f in enumerate(_list(rule.get("from"))):
        src = _dict(_dict(f).get("source"))
        out += [f"from[{i}].source.{k}" for k in _HTTP_SOURCE if src.get(k)]
    for i, t in enumerate(_list(rule.get("to"))):
        op = _dict(_dict(t).get("operation"))
        out += [f"to[{i}].operation.{k}" for k in _HTTP_OPERATION if op.get(k)]
    for i, cond in enumerate(_list(rule.get("when"))):
        key = str(_dict(cond).get("key") or "")
        if key.startswith(("request.headers", "request.auth.")):
            out.append(f"when[{i}].key={key}")
    return out


def _policies(ctx: Context) -> list[Policy]:
    return [Policy(m, m.namespace(ctx.namespace)) for m in ctx.authz]


def allow_policies(ctx: Context, c: Cluster, g: Group) -> list[Policy]:
    """The ALLOW AuthorizationPolicies of the input that apply to a group's pods."""
    return [p for p in _policies(ctx) if p.action == "ALLOW" and p.applies(ctx, c, g)]


def _value_matches(pattern: str, value: str) -> bool:
    """Istio's string match of ``principals``/``namespaces`` entries: exact, ``prefix*``,
    ``*suffix`` or ``*`` (any)."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def principal_matches(pattern: str, namespace: str, service_account: str) -> bool:
    """A ``principals`` entry matches ``<trust domain>/ns/<namespace>/sa/<service_account>``.

    The trust domain is not in the input: the one the entry names is taken as the mesh's
    (istiod also maps ``cluster.local`` and the trust domain aliases onto it)."""
    tail = f"/ns/{namespace}/sa/{service_account}"
    head = pattern.lstrip("*").split("/", 1)[0]
    domain = head if head and not pattern.startswith("*") else "cluster.local"
    if pattern.endswith("*") and "/" not in pattern:
        return True  # a prefix of the trust domain alone: some trust domain matches
    return _value_matches(pattern, domain + tail)


def names_principal(rule: dict[str, Any], namespace: str, service_account: str) -> bool:
    """A rule admits that service account by naming it: a ``from`` source whose
    ``principals`` (exactly, or by a prefix or suffix wildcard, not the bare ``*`` that admits
    every peer) match it and whose ``notPrincipals``, ``namespaces`` and ``notNamespaces`` and
    the rule's ``when`` conditions on ``source.principal``/``source.namespace`` do not exclude
    it. Other source fields (IP blocks) are assumed to match."""
    def ok(patterns: list[str], value: str, by: Any) -> bool:
        return not patterns or any(by(p, value) for p in patterns)

    def hit(patterns: list[str], value: str, by: Any) -> bool:
        return any(by(p, value) for p in patterns)

    def principal(p: str, _: str) -> bool:
        return principal_matches(p, namespace, service_account)

    for cond in _list(rule.get("when")):
        cond = _dict(cond)
        key = str(cond.get("key") or "")
        by = principal if key == "source.principal" else (
            _value_matches if key == "source.namespace" else None)
        if by is None:
            continue
        if not ok(_strs(cond.get("values")), namespace, by) or hit(
                _strs(cond.get("notValues")), namespace, by):
            return False
    for f in _list(rule.get("from")):
        src = _dict(_dict(f).get("source"))
        named = [p for p in _strs(src.get("principals")) if p != "*"]
        if (hit(named, namespace, principal)
                and not hit(_strs(src.get("notPrincipals")), namespace, principal)
                and ok(_strs(src.get("namespaces")), namespace, _value_matches)
                and not hit(_strs(src.get("notNamespaces")), namespace, _value_matches)):
            return True
    return False


def _groups(ctx: Context) -> Iterator[tuple[Cluster, Manifest, Group]]:
    for c, m in ctx.clusters:
        for g in c.groups:
            yield c, m, g


def check(ctx: Context) -> None:
    policies = _policies(ctx)
    for c, _, g in _groups(ctx):
        if injection_off(g.template):
            continue  # no sidecar enforces a policy there (the capture family reports it)
        applying = [p for p in policies if p.applies(ctx, c, g)]
        allow = [p for p in applying if p.action == "ALLOW"]
        tcp = l4_ports(ctx, c, g)
        _check_denied(ctx, c, g, allow, tcp)
        for p in allow:
            _check_open(ctx, g, p, tcp)
        for p in applying:
            if p.action in {"ALLOW", "DENY"}:
                _check_http_on_tcp(ctx, g, p, tcp)
    _check_netpols(ctx)


def admitting_ports(rule: dict[str, Any], ports: set[int], tcp: set[int]) -> set[int]:
    """Ports an ALLOW rule can admit anyone to: its ``to`` ports, less the TCP ports when it
    uses HTTP-only fields (it never matches there)."""
    admitted = rule_ports(rule, ports)
    return admitted - tcp if http_fields(rule) else admitted


def _check_denied(ctx: Context, c: Cluster, g: Group, allow: list[Policy], tcp: set[int]
                  ) -> None:
    if not allow:
        return
    needed = ray_ports(g)
    admitted: set[int] = set()
    for p in allow:
        for _, rule in p.rules():
            admitted |= admitting_ports(rule, set(needed), tcp)
    missing = sorted(set(needed) - admitted)
    if not missing:
        return
    names = ", ".join(p.manifest.name for p in allow)
    blocking = [n for n in missing if needed[n] not in _METRICS]
    comps = sorted({needed[n] for n in missing})
    ctx.add(AUTHZ_PORT_DENIED, allow[0].manifest, "spec.rules", compress(missing),
            f"ALLOW policies ({names}) select group {g.name} of {c.ref} but no rule "
            f"admits these ports ({', '.join(comps)}): Istio denies them to every peer, so Ray "
            "hangs on them", "add a rule admitting the cluster's own principals to them (a "
            "rule with only `from`, no `to`, covers every port)",
            severity=None if blocking else WARNING)


def _check_open(ctx: Context, g: Group, p: Policy, tcp: set[int]) -> None:
    # Serve's proxies are the application's own endpoints: who reaches them is its choice
    internal = {n: c for n, c in ray_ports(g).items() if not c.startswith("serve-")}
    user = user_ports(g)
    for i, rule in p.rules():
        if not any_source(rule):
            continue
        key = f"spec.rules[{i}]"
        hit_user = sorted(admitting_ports(rule, set(user), tcp))
        if hit_user:
            comps = ", ".join(user[n] for n in hit_user)
            ctx.add(AUTHZ_DASHBOARD_OPEN, p.manifest, key, compress(hit_user),
                    f"admits any source to group {g.name}'s {comps}: anyone who reaches them "
                    "runs code on the cluster (CVE-2023-48022); rules are ORed, so another "
                    "rule's `from` does not restrict this one",
                    "give this rule a `from` with the gateway's or job submitters' principals")
        hit = sorted(admitting_ports(rule, set(internal), tcp))
        if hit:
            ctx.add(AUTHZ_ANY_SOURCE, p.manifest, key, compress(hit),
                    f"admits any source to group {g.name}'s Ray ports (a driver that reaches "
                    "GCS runs code on the cluster); rules are ORed, so another rule's `from` "
                    "does not restrict this one",
                    "add `from: [source: {principals: [<the cluster's service accounts>]}]` "
                    "to this rule")


def l4_ports(ctx: Context, c: Cluster, g: Group) -> set[int]:
    """The group's ports that get a TCP filter chain: every Service selecting its pods that
    declares the port (and KubeRay's head Service, for the head) declares an L4 protocol."""
    labels = g.pod_labels(c.name)
    protocols: dict[int, set[str]] = {}
    for svc in ctx.services:
        if svc.namespace != c.namespace or not svc.selects(labels):
            continue
        for _, port in svc.ports():
            target = as_int(port.get("targetPort")) or as_int(port.get("port"))
            proto = declared_protocol(port)
            if target is not None:
                protocols.setdefault(target, set()).add(proto or "")
    if g.is_head:
        for n, proto in c.head_service_protocols().items():
            protocols.setdefault(n, set()).add(proto)
    return {n for n, ps in protocols.items() if "" not in ps and not ps & _L7}


def _check_http_on_tcp(ctx: Context, g: Group, p: Policy, tcp: set[int]) -> None:
    for i, rule in p.rules():
        fields = http_fields(rule)
        hit = sorted(rule_ports(rule, tcp))
        if not fields or not hit:
            continue
        if p.action == "ALLOW":
            effect = "this ALLOW rule never matches there"
            severity = None
        else:
            effect = ("Istio drops those fields there, so this DENY rule denies every "
                      "connection it otherwise matches")
            severity = WARNING
        ctx.add(AUTHZ_HTTP_ON_TCP, p.manifest, f"spec.rules[{i}]", fields,
                f"group {g.name}'s ports {compress(hit)} get a TCP filter chain (their Services "
                f"declare tcp), where HTTP-only fields cannot be evaluated: {effect}",
                "declare the ports http/grpc on the Services, or use only L4 fields (principals, "
                "namespaces, ipBlocks, ports)", severity=severity)


# --- NetworkPolicies -------------------------------------------------------------------------


def _selects(selector: Any, labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector against labels (an empty selector selects everything)."""
    sel = _dict(selector)
    for k, v in _dict(sel.get("matchLabels")).items():
        if labels.get(str(k)) != str(v):
            return False
    for expr in _list(sel.get("matchExpressions")):
        e = _dict(expr)
        key, op, values = str(e.get("key")), str(e.get("operator")), _strs(e.get("values"))
        has = key in labels
        ok = {"In": has and labels.get(key) in values,
              "NotIn": not has or labels.get(key) not in values,
              "Exists": has, "DoesNotExist": not has}.get(op, True)
        if not ok:
            return False
    return True


def _ingress_policy(np: Manifest) -> bool:
    spec = _dict(np.obj.get("spec"))
    types = _strs(spec.get("policyTypes"))
    return "Ingress" in types or not types


def _ns_selects(selector: Any, ns: str) -> bool:
    sel = _dict(selector)
    name = _dict(sel.get("matchLabels")).get("kubernetes.io/metadata.name")
    return name is None or str(name) == ns  # other labels: not visible here, assume they match


def _peer_admits(peer: dict[str, Any], np_ns: str, c: Cluster, labels: dict[str, str]) -> bool:
    if "ipBlock" in peer and "podSelector" not in peer and "namespaceSelector" not in peer:
        return True  # a CIDR may hold the pod network: pod IPs are not known here
    if "namespaceSelector" in peer:
        if not _ns_selects(peer["namespaceSelector"], c.namespace):
            return False
    elif np_ns != c.namespace:
        return False
    return _selects(peer.get("podSelector"), labels)


def _port_admits(entry: dict[str, Any], port: int, named: dict[str, int]) -> bool:
    if str(entry.get("protocol") or "TCP").upper() != "TCP":
        return False
    raw = entry.get("port")
    if raw is None:
        return True
    n = as_int(raw)
    if n is None:
        n = named.get(str(raw))
    if n is None:
        return False
    end = as_int(entry.get("endPort"))
    return n <= port <= end if end is not None else n == port


def _check_netpols(ctx: Context) -> None:
    netpols = [(np, np.namespace(ctx.namespace)) for np in ctx.netpols if _ingress_policy(np)]
    for c, _, g in _groups(ctx):
        pod = g.pod_labels(c.name)
        selecting = [(np, ns) for np, ns in netpols if ns == c.namespace
                     and _selects(_dict(np.obj.get("spec")).get("podSelector"), pod)]
        if not selecting:
            continue
        named = {str(p.get("name")): n for p in g.container_ports()
                 if p.get("name") and (n := as_int(p.get("containerPort"))) is not None}
        needed = ray_ports(g)
        for peer in c.groups:
            peer_labels = peer.pod_labels(c.name)
            missing = [n for n in sorted(needed) if not any(
                _rule_admits(_dict(rule), ns, c, peer_labels, n, named)
                for np, ns in selecting
                for rule in _list(_dict(np.obj.get("spec")).get("ingress")))]
            if missing:
                ctx.add(NETPOL_PORT_BLOCKED, selecting[0][0], "spec.ingress", compress(missing),
                        f"NetworkPolicies ({', '.join(np.name for np, _ in selecting)}) select "
                        f"group {g.name} of {c.ref} but admit no ingress from group "
                        f"{peer.name}'s pods to these Ray ports: Ray hangs on them",
                        f"add an ingress rule from podSelector {c.selector_hint()} to every "
                        "Ray port (or to all ports)")


def _rule_admits(rule: dict[str, Any], ns: str, c: Cluster, peer: dict[str, str], port: int,
                 named: dict[str, int]) -> bool:
    peers = _list(rule.get("from"))
    if peers and not any(_peer_admits(_dict(p), ns, c, peer) for p in peers):
        return False
    ports = _list(rule.get("ports"))
    return not ports or any(_port_admits(_dict(e), port, named) for e in ports)
