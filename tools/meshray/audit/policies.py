"""How Istio reads an AuthorizationPolicy around Ray pods, as modelled, which of a group's
ports Ray needs, and how a NetworkPolicy's ports and namespace selectors read: the ground the
``authz``, ``identity``, ``netpolicy`` and ``rayjob`` families share.

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

Which ports Ray needs: every port of a group's model (``raymodel``) except the dashboard and
the Ray Client, which only users and gateways dial (closing them is a choice, not a hang); the
autoscaler and dashboard metrics ports and Serve's proxies only when pinned through env.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..manifests import Manifest
from ..protocol import declared_protocol
from ..raymodel import Cluster, Group, as_int
from .context import Context
from .raypods import as_dict, as_list, str_list

USER_FACING = ("dashboard-port", "ray-client-server-port")
_L7 = {"http", "http2", "grpc", "grpc-web"}  # the rest (tcp, tls, https...) get a TCP chain
_HTTP_SOURCE = ("requestPrincipals", "notRequestPrincipals")
_HTTP_OPERATION = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")
_RESTRICTING_SOURCE = ("principals", "namespaces", "ipBlocks", "remoteIpBlocks",
                       "requestPrincipals")
_SOURCE_KEYS = ("source.principal", "source.namespace", "source.ip", "remote.ip",
                "request.auth.principal")


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
    """An AuthorizationPolicy of the input and the namespace it lives in."""

    manifest: Manifest
    namespace: str

    @property
    def spec(self) -> dict[str, Any]:
        return as_dict(self.manifest.obj.get("spec"))

    @property
    def action(self) -> str:
        return str(self.spec.get("action") or "ALLOW").upper()

    @property
    def targeted(self) -> bool:
        return bool(self.spec.get("targetRef") or self.spec.get("targetRefs"))

    @property
    def labels(self) -> dict[str, str]:
        labels = as_dict(as_dict(self.spec.get("selector")).get("matchLabels"))
        return {str(k): str(v) for k, v in labels.items()}

    def rules(self) -> list[tuple[int, dict[str, Any]]]:
        rules = enumerate(as_list(self.spec.get("rules")))
        return [(i, r) for i, r in rules if isinstance(r, dict)]

    def applies(self, ctx: Context, c: Cluster, g: Group) -> bool:
        if self.targeted or self.namespace not in {c.namespace, ctx.root_namespace}:
            return False
        pod = g.pod_labels(c.name)
        return all(pod.get(k) == v for k, v in self.labels.items())


def _operations(rule: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rule's operations; None when it has no ``to`` (any operation)."""
    to = as_list(rule.get("to"))
    if not to:
        return None
    return [as_dict(as_dict(t).get("operation")) for t in to]


def _op_admits(op: dict[str, Any], port: int) -> bool:
    ports, not_ports = str_list(op.get("ports")), str_list(op.get("notPorts"))
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
        values = str_list(source.get(key))
        if values and "*" not in values:
            return False
    return True


def any_source(rule: dict[str, Any]) -> bool:
    """The rule admits any peer: no ``from``, or one source that restricts nothing, and no
    ``when`` condition on the peer's identity or address."""
    for cond in as_list(rule.get("when")):
        cond = as_dict(cond)
        key = str(cond.get("key") or "")
        values = str_list(cond.get("values"))
        if key in _SOURCE_KEYS and values and "*" not in values:
            return False
    sources = as_list(rule.get("from"))
    return not sources or any(_open_source(as_dict(as_dict(f).get("source"))) for f in sources)


def http_fields(rule: dict[str, Any]) -> list[str]:
    """The HTTP-only fields a rule uses, as paths inside the rule."""
    out: list[str] = []
    for i, f in enumerate(as_list(rule.get("from"))):
        src = as_dict(as_dict(f).get("source"))
        out += [f"from[{i}].source.{k}" for k in _HTTP_SOURCE if src.get(k)]
    for i, t in enumerate(as_list(rule.get("to"))):
        op = as_dict(as_dict(t).get("operation"))
        out += [f"to[{i}].operation.{k}" for k in _HTTP_OPERATION if op.get(k)]
    for i, cond in enumerate(as_list(rule.get("when"))):
        key = str(as_dict(cond).get("key") or "")
        if key.startswith(("request.headers", "request.auth.")):
            out.append(f"when[{i}].key={key}")
    return out


def admitting_ports(rule: dict[str, Any], ports: set[int], tcp: set[int]) -> set[int]:
    """Ports an ALLOW rule can admit anyone to: its ``to`` ports, less the TCP ports when it
    uses HTTP-only fields (it never matches there)."""
    admitted = rule_ports(rule, ports)
    return admitted - tcp if http_fields(rule) else admitted


def authorization_policies(ctx: Context) -> list[Policy]:
    """The input's AuthorizationPolicies, each with the namespace it applies in."""
    return [Policy(m, m.namespace(ctx.namespace)) for m in ctx.authz]


def allow_policies(ctx: Context, c: Cluster, g: Group) -> list[Policy]:
    """The ALLOW AuthorizationPolicies of the input that apply to a group's pods."""
    return [p for p in authorization_policies(ctx)
            if p.action == "ALLOW" and p.applies(ctx, c, g)]


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

    for cond in as_list(rule.get("when")):
        cond = as_dict(cond)
        key = str(cond.get("key") or "")
        by = principal if key == "source.principal" else (
            _value_matches if key == "source.namespace" else None)
        if by is None:
            continue
        if not ok(str_list(cond.get("values")), namespace, by) or hit(
                str_list(cond.get("notValues")), namespace, by):
            return False
    for f in as_list(rule.get("from")):
        src = as_dict(as_dict(f).get("source"))
        named = [p for p in str_list(src.get("principals")) if p != "*"]
        if (hit(named, namespace, principal)
                and not hit(str_list(src.get("notPrincipals")), namespace, principal)
                and ok(str_list(src.get("namespaces")), namespace, _value_matches)
                and not hit(str_list(src.get("notNamespaces")), namespace, _value_matches)):
            return True
    return False


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


# ---------------------------------------------------------------- NetworkPolicy readers

NS_NAME = "kubernetes.io/metadata.name"  # the label every Namespace carries with its name


def netpol_port_admits(entry: Any, port: int, named: dict[str, int] | None = None) -> bool:
    """A NetworkPolicy ``ports`` entry admits TCP ``port``. A named port resolves through
    ``named`` (the target pods' container ports); without that table (pods the input does not
    show) any name may be the port."""
    e = as_dict(entry)
    if str(e.get("protocol") or "TCP").upper() != "TCP":
        return False
    raw = e.get("port")
    if raw is None:
        return True
    n = as_int(raw)
    if n is None:
        if named is None:
            return isinstance(raw, str)
        n = named.get(str(raw))
    if n is None:
        return False
    end = as_int(e.get("endPort"))
    return n <= port <= end if end is not None else n == port


def namespace_may_be(selector: Any, namespace: str) -> bool:
    """A namespaceSelector may pick ``namespace``: read through the name label Kubernetes sets
    on every Namespace (matchLabels and matchExpressions); other labels are not in the input,
    so they are assumed to match."""
    sel = as_dict(selector)
    name = as_dict(sel.get("matchLabels")).get(NS_NAME)
    if name is not None and str(name) != namespace:
        return False
    for expr in as_list(sel.get("matchExpressions")):
        e = as_dict(expr)
        if str(e.get("key")) != NS_NAME:
            continue
        values = str_list(e.get("values"))
        op = str(e.get("operator"))
        if (op == "In" and namespace not in values) or (op == "NotIn" and namespace in values):
            return False
        if op == "DoesNotExist":
            return False
    return True
