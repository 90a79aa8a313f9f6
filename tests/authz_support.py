"""What the tests of the Ray pods' AuthorizationPolicy give the chart and expect back, shared by
the render tests (tests/render/test_render_security.py) and the real istiod's (tests/mesh/
test_authorization.py): one principal per user-facing kind of port, and the oracle of who may
reach a port, from what opens it in `ray start` (a flag or env var, REFERENCE §1)."""

from __future__ import annotations

SUBMITTER = "cluster.local/ns/jobs/sa/submitter"
NOTEBOOK = "cluster.local/ns/users/sa/notebook"
PROMETHEUS = "cluster.local/ns/monitoring/sa/prometheus"
FRONTEND = "cluster.local/ns/web/sa/frontend"
GATEWAY = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
# --set values listing each of them (and turning Serve on, so its ports exist)
LISTS = (
    "serve.enabled=true",
    f"mesh.authorizationPolicy.dashboardPrincipals={{{SUBMITTER}}}",
    f"mesh.authorizationPolicy.clientPrincipals={{{NOTEBOOK}}}",
    f"mesh.authorizationPolicy.metricsPrincipals={{{PROMETHEUS}}}",
    f"mesh.authorizationPolicy.servePrincipals={{{FRONTEND}}}",
)
# What opens a port -> the principal LISTS admits to it.
LISTED_BY = {
    "dashboard-port": SUBMITTER,
    "ray-client-server-port": NOTEBOOK,
    "metrics-export-port": PROMETHEUS,
    "AUTOSCALER_METRIC_PORT": PROMETHEUS,
    "DASHBOARD_METRIC_PORT": PROMETHEUS,
    "RAY_SERVE_DEFAULT_HTTP_PORT": FRONTEND,
    "RAY_SERVE_DEFAULT_GRPC_PORT": FRONTEND,
}
# They run code for their callers: not even the cluster's own pods are admitted.
USER_FACING = {"dashboard-port", "ray-client-server-port"}


def expected(ports: dict[int, str], own: str, listed: dict[str, str]) -> dict[int, set[str]]:
    """Who the values admit, per port (-> what opens it) a pod listens on: the pod's own
    service account unless the port is user-facing, plus the principal listed for its kind."""
    return {p: ({own} if o not in USER_FACING else set()) | ({listed[o]} if o in listed else set())
            for p, o in ports.items()}
