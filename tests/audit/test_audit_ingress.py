"""meshray/audit/ingress.py: Ingress backends to Ray's Services."""

from __future__ import annotations

import pytest
from audit_support import (
    Case,
    Docs,
    Mutation,
    assert_clean,
    backend,
    base,
    cluster,
    head,
    ingress,
    run,
    set_env,
    svc,
    worker,
)

CASES: list[Case] = [
    ("ingress-service-missing", "error", lambda d: backend(d).update(name="demo-svc")),
    ("ingress-port-missing", "error", lambda d: backend(d).update(port={"number": 9999})),
    ("ingress-port-missing", "error", lambda d: backend(d).update(port={"name": "dash"})),
    ("ingress-protocol-mismatch", "error", lambda d: ingress(d)["metadata"]["annotations"].update(
        {"nginx.ingress.kubernetes.io/backend-protocol": "GRPC"})),
    ("ingress-protocol-mismatch", "error", lambda d: (
        backend(d).update(port={"number": 10001}),
        ingress(d)["metadata"]["annotations"].update(
            {"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"}))),
    ("ingress-exposes-ray", "warning", lambda d: ingress(d)["metadata"]["annotations"].pop(
        "nginx.ingress.kubernetes.io/auth-url")),
]


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    # the ingress may name the head Service's port by name
    ("ingress by port name", lambda d: backend(d).update(port={"name": "dashboard"})),
    # an ingress to a Service in the input
    ("ingress to input service", lambda d: backend(d).update(
        name="demo-headless-svc", port={"number": 8080})),
    # Ray token auth (KubeRay authOptions) guards the dashboard behind an unauthenticated Ingress
    ("ray token auth", lambda d: (
        ingress(d)["metadata"]["annotations"].pop("nginx.ingress.kubernetes.io/auth-url"),
        cluster(d)["spec"].update(authOptions={"mode": "token"}))),
]


# --- what counts as authentication -----------------------------------------------------------
# Ray's gRPC servers under Ray-native TLS (RAY_USE_TLS) require a client certificate signed by
# the CA in RAY_TLS_CA_CERT (ray/_private/tls_utils.py: require_client_auth=ca_cert is not
# None), from whoever opens the TLS session: with ssl-passthrough the user, with
# backend-protocol GRPCS NGINX, which has a certificate only through proxy-ssl-secret (and
# then shows it for everyone). The dashboard is HTTP: Ray's TLS does not cover it.

TLS_ENV = (("RAY_USE_TLS", "1"), ("RAY_TLS_SERVER_CERT", "/etc/ray/tls/tls.crt"),
           ("RAY_TLS_SERVER_KEY", "/etc/ray/tls/tls.key"),
           ("RAY_TLS_CA_CERT", "/etc/ray/tls/ca.crt"))
PASSTHROUGH = {"nginx.ingress.kubernetes.io/ssl-passthrough": "true",
               "nginx.ingress.kubernetes.io/backend-protocol": "GRPC"}


def client_ingress(annotations: dict[str, str], ca: bool = True) -> Mutation:
    """The Ray Client behind NGINX, with Ray-native TLS on every group (with or without its
    CA, which is what makes Ray ask for client certificates)."""
    def mutate(d: Docs) -> None:
        for g in (head(d), worker(d)):
            for name, value in TLS_ENV:
                if ca or name != "RAY_TLS_CA_CERT":
                    set_env(g, name, value)
        for p in svc(d)["spec"]["ports"]:
            if p["appProtocol"] == "grpc":
                p["appProtocol"] = "tls"
        backend(d).update(port={"number": 10001})
        ingress(d)["metadata"]["annotations"] = dict(annotations)
    return mutate


def test_passthrough_to_ray_tls_with_client_certificates_is_authenticated() -> None:
    assert_clean(client_ingress(PASSTHROUGH))


@pytest.mark.parametrize(("name", "mutate"), [
    # Ray-native TLS without a CA: TLS, but anyone may open it
    ("no CA", client_ingress(PASSTHROUGH, ca=False)),
    # NGINX opens the TLS session to Ray with its own certificate, for every user
    ("NGINX's certificate", client_ingress({
        "nginx.ingress.kubernetes.io/backend-protocol": "GRPCS",
        "nginx.ingress.kubernetes.io/proxy-ssl-secret": "ray/nginx-client"})),
    # NGINX asks users for a certificate but lets them in without one
    ("optional client certificate", lambda d: (
        client_ingress({"nginx.ingress.kubernetes.io/backend-protocol": "GRPCS",
                        "nginx.ingress.kubernetes.io/proxy-ssl-secret": "ray/nginx-client",
                        "nginx.ingress.kubernetes.io/auth-tls-secret": "ray/ca",
                        "nginx.ingress.kubernetes.io/auth-tls-verify-client": "optional"})(d))),
    # the dashboard is plain HTTP: Ray's TLS on the gRPC ports does not guard it
    ("dashboard under passthrough", lambda d: (
        client_ingress({"nginx.ingress.kubernetes.io/ssl-passthrough": "true"})(d),
        backend(d).update(port={"number": 8265}))),
], ids=lambda x: x if isinstance(x, str) else "")
def test_tls_that_asks_no_one_for_a_certificate_is_not_authentication(
        name: str, mutate: Mutation) -> None:
    docs = base()
    mutate(docs)
    [f] = [f for f in run(docs) if f.check == "ingress-exposes-ray"]
    assert f.severity == "warning" and "without authentication" in f.message


@pytest.mark.parametrize("annotations", [
    # NGINX itself requires a client certificate (auth-tls-verify-client defaults to on)
    {"nginx.ingress.kubernetes.io/backend-protocol": "GRPCS",
     "nginx.ingress.kubernetes.io/proxy-ssl-secret": "ray/nginx-client",
     "nginx.ingress.kubernetes.io/auth-tls-secret": "ray/ca"},
    # NGINX opens TLS to Ray without a certificate: Ray refuses it, nothing is exposed
    {"nginx.ingress.kubernetes.io/backend-protocol": "GRPCS"},
], ids=["nginx-client-cert", "ray-refuses-nginx"])
def test_client_certificates_elsewhere_count(annotations: dict[str, str]) -> None:
    docs = base()
    client_ingress(annotations)(docs)
    assert [f.line() for f in run(docs) if f.check == "ingress-exposes-ray"] == []
