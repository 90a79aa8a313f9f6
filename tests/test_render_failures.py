"""Every problem the chart's validation can report (one define per rule family, in the
templates/*/_validate.tpl files beside what they check, all collected into the single `fail` of
templates/validate.yaml), triggered once: bad values never render a manifest, and the message
names the offending key and value. A values file with several mistakes gets every message in
one helm error."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, REPO, Renderer
from meshray.render import RenderError, RenderRequest, chart_refusals, render

LONG = "a" * 51  # 51 + len("-headless-svc") = 64 > 63
SERVE_ROUTE = ("serve.enabled=true", "gateway.routes.serve.enabled=true",
               "gateway.routes.serve.host=serve.example.com")
GW_ON = ("gateway.enabled=true", *SERVE_ROUTE)
GW_CLIENT = ("gateway.enabled=true", "gateway.routes.client.enabled=true",
             "gateway.routes.client.host=ray-client.example.com")
GA_DASH = ("gatewayAPI.enabled=true", "gatewayAPI.https.certificateSecret=tls",
           "gatewayAPI.acknowledgeUnauthenticated=true", "gatewayAPI.routes.dashboard.enabled=true",
           "gatewayAPI.routes.dashboard.host=ray.example.com")
GA_JWT_DASH = ("gatewayAPI.enabled=true", "gatewayAPI.https.certificateSecret=tls",
               "gatewayAPI.routes.dashboard.enabled=true",
               "gatewayAPI.routes.dashboard.host=ray.example.com")
JWT = ("auth.jwtIssuer=https://issuer", "auth.jwksUri=https://issuer/jwks")
GA_CLIENT = ("gatewayAPI.enabled=true", "gatewayAPI.https.certificateSecret=tls",
             "gatewayAPI.routes.client.enabled=true",
             "gatewayAPI.routes.client.host=ray-client.example.com")

RJ = ("workload.kind=RayJob", "rayJob.entrypoint=python job.py")

# (id, --set values, release, substrings the message must contain)
CASES: list[tuple[str, tuple[str, ...], str, tuple[str, ...]]] = [
    ("release-not-dns-label", (), "9lives",
     ("the release name", '"9lives-meshray"', "DNS-1035")),
    ("derived-name-too-long", (f"clusterName={LONG}",), "meshray",
     ("clusterName", LONG, "exceeds 63")),
    ("worker-list-duplicate", ("ports.workerPortList={12000,12001,12000}",), "meshray",
     ("ports.workerPortList", "port 12000 is listed twice")),
    ("worker-list-over-ceiling", ("ports.workerPortList={12000,12001,12002}",
                                  "ports.maxWorkerPorts=2"), "meshray",
     ("ports.workerPortList", "3 worker ports exceed ports.maxWorkerPorts=2")),
    ("raytls-listeners-over-ceiling", ("rayTls.enabled=true", "workerDefaults.maxReplicas=40"),
     "meshray", ("rayTls.maxListeners", "41 pods (head + maxReplicas) x 50 worker ports is 2050",
                 "above rayTls.maxListeners=2000")),
    ("worker-range-inverted", ("ports.minWorkerPort=10100", "ports.maxWorkerPort=10100"),
     "meshray", ("ports.maxWorkerPort", "10100 must be greater than ports.minWorkerPort (10100)")),
    ("worker-range-over-ceiling", ("ports.maxWorkerPort=19999",), "meshray",
     ("ports.maxWorkerPort", "10002-19999 is 9998 ports, above ports.maxWorkerPorts=200",
      "OOM")),
    ("duplicate-port", ("ports.objectManager=6380",), "meshray",
     ("ports.objectManager", "port 6380 is already used by ports.nodeManager")),
    ("pinned-port-inside-worker-range", ("ports.client=10005",), "meshray",
     ("ports.maxWorkerPort", "port 10005 is already used by ports.client")),
    ("gcs-server-port", ("head.rayStartParams.gcs-server-port=6379",), "meshray",
     ("head.rayStartParams.gcs-server-port", '"6379"', "Ray 2.48 removed it")),
    ("dashboard-grpc-port-new-ray", ("workerDefaults.rayStartParams.dashboard-grpc-port=6390",),
     "meshray", ("workerDefaults.rayStartParams.dashboard-grpc-port", '"6390"',
                 "Ray 2.48 removed --dashboard-grpc-port")),
    ("dashboard-grpc-port-old-ray", ("ray.version=2.10.0",
                                     "head.rayStartParams.dashboard-grpc-port=6390"), "meshray",
     ("head.rayStartParams.dashboard-grpc-port", '"6390"', "ports.dashboardGrpc")),
    ("pinned-flag-override", ("workerGroups.gpu.rayStartParams.object-manager-port=7000",),
     "meshray", ("workerGroups.gpu.rayStartParams.object-manager-port", '"7000"',
                 "overrides a port the chart pins")),
    ("node-ip-override", ("head.rayStartParams.node-ip-address=10.0.0.1",), "meshray",
     ("head.rayStartParams.node-ip-address", '"10.0.0.1"')),
    ("kuberay-label", ("head.labels.ray\\.io/group=x",), "meshray",
     ("head.labels.ray.io/group", '"x"', "KubeRay (ray.io/) or the chart (meshray.io/) sets")),
    ("cluster-domain-svc", ("clusterDomain=svc.cluster.local",), "meshray",
     ("clusterDomain", '"svc.cluster.local"', "contains the label svc")),
    ("common-label-chart-own", ("commonLabels.app\\.kubernetes\\.io/instance=x",), "meshray",
     ("commonLabels.app.kubernetes.io/instance", '"x"', "the chart sets this label")),
    ("service-label-also-common", ("commonLabels.team=a", "service.labels.team=b"), "meshray",
     ("service.labels.team", '"b"', "is also in commonLabels")),
    ("env-ray-tls", ("rayTls.enabled=true", "head.env[0].name=RAY_TLS_SERVER_KEY",
                     "head.env[0].value=/k"), "meshray",
     ("head.env[0]", "RAY_TLS_SERVER_KEY", "rayTls.enabled is on")),
    ("gateway-route-gateway-off", ("gateway.routes.client.enabled=true",), "meshray",
     ("gateway.routes.client.enabled", "true, but gateway.enabled is false")),
    ("group-name-too-long", (f"workerGroups.{'g' * 64}.replicas=1",), "meshray",
     (f"workerGroups.{'g' * 64}", "64 characters")),
    ("replicas-out-of-bounds", ("workerGroups.cpu.replicas=5", "workerGroups.cpu.maxReplicas=2"),
     "meshray", ("workerGroups.cpu.replicas", "5 is outside minReplicas..maxReplicas (1..2)")),
    ("port-mtls-namespace-scope", ("mtls.scope=namespace", "mtls.portLevelMtls[0].port=8080",
                                   "mtls.portLevelMtls[0].mode=PERMISSIVE"), "meshray",
     ("mtls.portLevelMtls", "workload selector")),
    ("port-mtls-unknown-port", ("mtls.portLevelMtls[0].port=9999",
                                "mtls.portLevelMtls[0].mode=PERMISSIVE"), "meshray",
     ("mtls.portLevelMtls", "port 9999 is not a port the Ray pods listen on")),
    ("port-mtls-duplicate", ("mtls.portLevelMtls[0].port=8080",
                             "mtls.portLevelMtls[0].mode=PERMISSIVE",
                             "mtls.portLevelMtls[1].port=8080",
                             "mtls.portLevelMtls[1].mode=DISABLE"), "meshray",
     ("mtls.portLevelMtls", "port 8080 is listed twice")),
    ("extra-policy-name-clash", ("mtls.extraPolicies[0].name=meshray",
                                 "mtls.extraPolicies[0].matchLabels.app=x"), "meshray",
     ("mtls.extraPolicies", '"meshray"', "already used")),
    ("client-ingress-without-tls", ("ingress.client.enabled=true",
                                    "ingress.client.host=ray.example.com"), "meshray",
     ("ingress.client.enabled", "rayTls.enabled=true")),
    ("client-ingress-without-host", ("ingress.client.enabled=true", "rayTls.enabled=true"),
     "meshray", ("ingress.client.host", "SNI")),
    ("dashboard-unauthenticated", ("ingress.dashboard.enabled=true",), "meshray",
     ("ingress.dashboard.auth.type", '"none"', "CVE-2023-48022", "acknowledgeUnauthenticated",
      "rayAuth.enabled")),
    ("dashboard-basic-without-secret", ("ingress.dashboard.enabled=true",
                                        "ingress.dashboard.auth.type=basic"), "meshray",
     ("ingress.dashboard.auth.basicSecretName", '""')),
    ("dashboard-external-without-url", ("ingress.dashboard.enabled=true",
                                        "ingress.dashboard.auth.type=external"), "meshray",
     ("ingress.dashboard.auth.externalUrl", '""')),
    ("dashboard-tls-without-secret", ("ingress.dashboard.enabled=true",
                                      "ingress.dashboard.acknowledgeUnauthenticated=true",
                                      "ingress.dashboard.tls.enabled=true"), "meshray",
     ("ingress.dashboard.tls.secretName", '""')),
    ("ray-auth-old-ray", ("rayAuth.enabled=true", "ray.version=2.51.0"), "meshray",
     ("rayAuth.enabled", "Ray >= 2.52", "2.51.0")),
    ("serve-random-port-mode", ("workerGroups.cpu.env[0].name=RAY_SERVE_ENABLE_DIRECT_INGRESS",
                                "string:workerGroups.cpu.env[0].value=1"), "meshray",
     ("workerGroups.cpu.env", 'RAY_SERVE_ENABLE_DIRECT_INGRESS="1"', "ray#64544")),
    ("gateway-without-routes", ("gateway.enabled=true",), "meshray",
     ("gateway.routes", "no route is enabled")),
    ("gateway-route-without-host", (*GW_ON, "gateway.routes.serve.host="), "meshray",
     ("gateway.routes.serve.host", '""')),
    ("gateway-serve-without-serve", ("gateway.enabled=true", "gateway.routes.serve.enabled=true",
                                     "gateway.routes.serve.host=s.example.com"), "meshray",
     ("gateway.routes.serve.enabled", "serve.enabled=true")),
    ("gateway-passthrough-without-tls", (*GW_CLIENT, "gateway.routes.client.mode=passthrough",
                                         "gateway.https.enabled=true"), "meshray",
     ("gateway.routes.client.mode", '"passthrough"', "rayTls.enabled=true")),
    ("gateway-grpc-with-ray-tls", (*GW_CLIENT, "rayTls.enabled=true",
                                   "gateway.acknowledgeUnauthenticated=true"), "meshray",
     ("gateway.routes.client.mode", '"grpc"', "rayTls.enabled=true")),
    ("gateway-passthrough-any-sni", (*GW_CLIENT, "gateway.routes.client.mode=passthrough",
                                     "rayTls.enabled=true", "gateway.https.enabled=true",
                                     "gateway.https.disableSniMatching=true"), "meshray",
     ("gateway.https.disableSniMatching", "passthrough")),
    ("gateway-passthrough-needs-https", (*GW_CLIENT, "gateway.routes.client.mode=passthrough",
                                         "rayTls.enabled=true"), "meshray",
     ("gateway.https.enabled", "false", "passthrough")),
    ("gateway-https-without-secret", (*GW_ON, "gateway.https.enabled=true"), "meshray",
     ("gateway.https.credentialName", '""')),
    ("gateway-redirect-without-https", (*GW_ON, "gateway.http.httpsRedirect=true"), "meshray",
     ("gateway.http.httpsRedirect", "gateway.https.enabled=true")),
    ("gateway-dashboard-unauthenticated", ("gateway.enabled=true",
                                           "gateway.routes.dashboard.enabled=true",
                                           "gateway.routes.dashboard.host=ray.example.com"),
     "meshray", ("gateway.auth.jwtIssuer", '""', "CVE-2023-48022",
                 "gateway.acknowledgeUnauthenticated")),
    ("gateway-jwt-without-jwks", ("gateway.enabled=true", "gateway.routes.dashboard.enabled=true",
                                  "gateway.routes.dashboard.host=ray.example.com",
                                  "gateway.auth.jwtIssuer=https://issuer"), "meshray",
     ("gateway.auth.jwksUri", '""', "https://issuer")),
    ("authz-without-mtls", ("mtls.mode=DISABLE",), "meshray",
     ("mtls.mode", '"DISABLE"', "mesh.authorizationPolicy.enabled=true", "mTLS identity")),
    ("authz-port-without-mtls", ("mtls.portLevelMtls[0].port=8080",
                                 "mtls.portLevelMtls[0].mode=DISABLE"), "meshray",
     ("mtls.portLevelMtls", "port 8080 is DISABLE", "mesh.authorizationPolicy.enabled=true")),
    ("two-trust-domains", ("gateway.trustDomain=corp.example",), "meshray",
     ("gateway.trustDomain", '"corp.example"', 'mesh.trustDomain ("cluster.local")')),
    ("netpol-peer-unknown-field", ("networkPolicy.enabled=true",
                                   "networkPolicy.dashboardFrom[0].podSelectr.app=x"), "meshray",
     ("networkPolicy.dashboardFrom[0]", "podSelectr is not a NetworkPolicy peer field",
      '{"podSelectr":{"app":"x"}}')),
    ("netpol-peer-ipblock-and-selector", ("networkPolicy.enabled=true",
                                          "networkPolicy.clientFrom[0].ipBlock.cidr=10.0.0.0/8",
                                          "networkPolicy.clientFrom[0].podSelector.app=x"),
     "meshray", ("networkPolicy.clientFrom[0]", "ipBlock cannot be combined",
                 '"cidr":"10.0.0.0/8"')),
    # cluster/_validate_inputs.tpl (the values corpus, tests/test_bad_values.py, has more)
    ("istio-owned-port", ("ports.gcs=15006",), "meshray",
     ("ports.gcs", "port 15006", "15000-15090")),
    ("istio-owned-worker-list-port", ("ports.workerPortList={12000,15001}",), "meshray",
     ("ports.workerPortList", "port 15001", "15000-15090")),
    ("istio-owned-worker-range", ("ports.minWorkerPort=14990", "ports.maxWorkerPort=15010"),
     "meshray", ("ports.maxWorkerPort", "14990-15010", "15000-15090")),
    ("serve-default-port-named", ("ports.dashboard=8000",), "meshray",
     ("ports.dashboard", "port 8000", "Ray Serve's default HTTP proxy port")),
    ("serve-default-port-worker", ("ports.workerPortList={12000,9000}",), "meshray",
     ("ports.workerPortList", "include 9000", "Ray Serve's default gRPC proxy port")),
    ("ray-1x", ("ray.version=1.13.0",), "meshray", ("ray.version", '"1.13.0"', "Ray 2.10")),
    ("image-tag-other-ray", ("ray.image.tag=2.41.0-py310",), "meshray",
     ("ray.image.tag", '"2.41.0-py310"', "Ray 2.60.0")),
    ("env-pins-a-port", ("head.env[0].name=RAY_DASHBOARD_PORT", "head.env[0].value=x"),
     "meshray", ("head.env[0]", "RAY_DASHBOARD_PORT", "port map")),
    ("env-value-and-value-from", ("head.env[0].name=X", "head.env[0].value=a",
                                  "head.env[0].valueFrom.fieldRef.fieldPath=metadata.name"),
     "meshray", ("head.env[0]", "X sets both value and valueFrom")),
    ("env-duplicate", ("head.env[0].name=X", "head.env[0].value=a", "head.env[1].name=X",
                       "head.env[1].value=b"), "meshray", ("head.env[1].name", '"X"', "twice")),
    ("volume-without-name", ("head.volumes[0].emptyDir.medium=Memory",), "meshray",
     ("head.volumes[0].name", "missing", "emptyDir")),
    ("volume-duplicate", ("head.volumes[0].name=d", "head.volumes[0].emptyDir.medium=Memory",
                          "head.volumes[1].name=d", "head.volumes[1].emptyDir.medium=Memory"),
     "meshray", ("head.volumes[1].name", '"d"', "twice")),
    ("volume-mount-without-volume", ("head.volumeMounts[0].name=data",
                                     "head.volumeMounts[0].mountPath=/data"), "meshray",
     ("head.volumeMounts[0].name", '"data"', "names no volume")),
    # mesh/_validate_exposure.tpl
    ("export-to-listed-twice", ("service.exportTo={.,.}",), "meshray",
     ("service.exportTo", '"."', "twice")),
    ("export-to-none-and-more", ("service.exportTo={~,.}",), "meshray",
     ("service.exportTo", '"~"', "cannot be combined")),
    ("export-to-hides-own-namespace", ("service.exportTo={istio-system}",), "meshray",
     ("service.exportTo", '["istio-system"]', "own namespace")),
    ("extra-policy-selects-ray-pods", ("mtls.extraPolicies[0].name=legacy",
                                       "mtls.extraPolicies[0].matchLabels.ray\\.io/cluster=meshray",
                                       "mtls.extraPolicies[0].mode=DISABLE"), "meshray",
     ("mtls.extraPolicies[0]", '"legacy"', "DISABLE", "selects the Ray pods")),
    # ingress/_validate.tpl
    ("client-ingress-not-nginx", ("rayTls.enabled=true", "ingress.client.enabled=true",
                                  "ingress.client.host=ray.example.com",
                                  "ingress.client.className=traefik"), "meshray",
     ("ingress.client.className", '"traefik"', "ssl-passthrough")),
    ("client-and-dashboard-one-host", ("rayTls.enabled=true", "ingress.client.enabled=true",
                                       "ingress.client.host=ray.example.com",
                                       "ingress.dashboard.enabled=true",
                                       "ingress.dashboard.host=ray.example.com",
                                       "ingress.dashboard.acknowledgeUnauthenticated=true"),
     "meshray", ("ingress.client.host", '"ray.example.com"', "two hosts")),
    ("dashboard-auth-not-nginx", ("ingress.dashboard.enabled=true",
                                  "ingress.dashboard.host=ray.example.com",
                                  "ingress.dashboard.className=traefik",
                                  "ingress.dashboard.auth.type=basic",
                                  "ingress.dashboard.auth.basicSecretName=auth"), "meshray",
     ("ingress.dashboard.auth.type", '"basic"', '"traefik"', "public")),
    ("nginx-auth-annotation-other-class", (
        "ingress.dashboard.enabled=true", "ingress.dashboard.host=ray.example.com",
        "ingress.dashboard.className=traefik", "ingress.dashboard.acknowledgeUnauthenticated=true",
        "ingress.dashboard.annotations.nginx\\.ingress\\.kubernetes\\.io/auth-url=http://a"),
     "meshray", ("ingress.dashboard.annotations", "nginx.ingress.kubernetes.io/auth-url",
                 '"traefik"')),
    # gateway/_validate.tpl
    ("gateway-two-routes-one-host", (*GW_ON, "gateway.acknowledgeUnauthenticated=true",
                                     "gateway.routes.dashboard.enabled=true",
                                     "gateway.routes.dashboard.host=serve.example.com"),
     "meshray", ("gateway.routes.serve.host", '"serve.example.com"', "gateway.routes.dashboard")),
    ("gateway-http-https-one-port", (*GW_ON, "gateway.https.enabled=true",
                                     "gateway.https.credentialName=tls",
                                     "gateway.https.port=80"), "meshray",
     ("gateway.https.port", "80", "one port")),
    # gatewayapi/_validate.tpl
    ("gatewayapi-with-istio-gateway", (*GW_ON, *GA_DASH), "meshray",
     ("gatewayAPI.enabled", "gateway.enabled=true", "migrate")),
    ("gatewayapi-without-routes", ("gatewayAPI.enabled=true",), "meshray",
     ("gatewayAPI.routes", "no route is enabled")),
    ("gatewayapi-route-without-host", (*GA_DASH, "gatewayAPI.routes.dashboard.host="), "meshray",
     ("gatewayAPI.routes.dashboard.host", '""')),
    ("gatewayapi-serve-without-serve", ("gatewayAPI.enabled=true",
                                        "gatewayAPI.https.certificateSecret=tls",
                                        "gatewayAPI.routes.serve.enabled=true",
                                        "gatewayAPI.routes.serve.host=s.example.com"), "meshray",
     ("gatewayAPI.routes.serve.enabled", "serve.enabled=true")),
    ("gatewayapi-passthrough-without-tls", (*GA_CLIENT,
                                            "gatewayAPI.routes.client.mode=passthrough"), "meshray",
     ("gatewayAPI.routes.client.mode", '"passthrough"', "rayTls.enabled=true")),
    ("gatewayapi-grpc-with-ray-tls", (*GA_CLIENT, "rayTls.enabled=true",
                                      "gatewayAPI.acknowledgeUnauthenticated=true"), "meshray",
     ("gatewayAPI.routes.client.mode", '"grpc"', "rayTls.enabled=true", "TLSRoute")),
    ("gatewayapi-https-without-secret", (*GA_DASH, "gatewayAPI.https.certificateSecret="),
     "meshray", ("gatewayAPI.https.certificateSecret", '""', "TLS Secret")),
    ("gatewayapi-dashboard-unauthenticated", ("gatewayAPI.enabled=true",
                                              "gatewayAPI.https.certificateSecret=tls",
                                              "gatewayAPI.routes.dashboard.enabled=true",
                                              "gatewayAPI.routes.dashboard.host=ray.example.com"),
     "meshray", ("gatewayAPI.auth.jwtIssuer", '""', "CVE-2023-48022",
                 "gatewayAPI.acknowledgeUnauthenticated")),
    ("gatewayapi-jwt-without-jwks", (*GA_DASH, "gatewayAPI.auth.jwtIssuer=https://issuer"),
     "meshray", ("gatewayAPI.auth.jwksUri", '""', "https://issuer")),
    ("gatewayapi-two-routes-one-host", (*GA_DASH, "gatewayAPI.routes.client.enabled=true",
                                        "gatewayAPI.routes.client.host=ray.example.com"),
     "meshray", ("gatewayAPI.routes.client.host", '"ray.example.com"',
                 "gatewayAPI.routes.dashboard")),
    ("gatewayapi-http-https-one-port", (*GA_DASH, "gatewayAPI.http.enabled=true",
                                        "gatewayAPI.http.port=443"), "meshray",
     ("gatewayAPI.http.port", "443", "one port")),
    ("gatewayapi-routes-namespace-same", (*GA_DASH, "gatewayAPI.routesInGatewayNamespace=true",
                                          "gatewayAPI.existingGateway=default/shared"), "meshray",
     ("gatewayAPI.routesInGatewayNamespace", '"default/shared"', "another namespace")),
    # mesh/_ambient.tpl
    ("waypoint-without-ambient", ("mesh.waypoint.enabled=true",), "meshray",
     ("mesh.waypoint.enabled", '"sidecar"', "mesh.dataplane=ambient")),
    ("ambient-sidecar-egress", ("mesh.dataplane=ambient", "mesh.sidecar.enabled=true"),
     "meshray", ("mesh.sidecar.enabled", '"ambient"', "mesh.sidecar.enabled=false")),
    ("ambient-sidecar-annotation", ("mesh.dataplane=ambient",
                                    "workerGroups.gpu.annotations.sidecar\\.istio\\.io/"
                                    "proxyCPU=500m"), "meshray",
     ("workerGroups.gpu.annotations.sidecar.istio.io/proxyCPU", '"500m"', "runs none")),
    ("ambient-enrolment-label", ("mesh.dataplane=ambient",
                                 "head.labels.istio\\.io/dataplane-mode=none"), "meshray",
     ("head.labels.istio.io/dataplane-mode", '"none"', "ambient enrolment")),
    ("ambient-jwt", (*GA_DASH, "mesh.dataplane=ambient",
                     "gatewayAPI.auth.jwtIssuer=https://issuer",
                     "gatewayAPI.auth.jwksUri=https://issuer/jwks"), "meshray",
     ("gatewayAPI.auth.jwtIssuer", '"https://issuer"', "ztunnel enforces L4 only")),
    # cluster/_validate.tpl
    ("worker-address", ("workerDefaults.rayStartParams.address=ray-head:6379",), "meshray",
     ("workerDefaults.rayStartParams.address", '"ray-head:6379"', "KubeRay sets")),
    # cluster/_validate.tpl: rayStartParams are data, never shell
    ("raystartparams-key-not-a-flag", ("head.rayStartParams.num-cpus;id=1",), "meshray",
     ("head.rayStartParams", '"num-cpus;id"', "not a ray start flag name")),
    ("raystartparams-control-character", ("string:workerDefaults.rayStartParams.num-cpus=2\n",),
     "meshray", ("workerDefaults.rayStartParams.num-cpus", '"2\\n"', "control character")),
    ("raystartparams-value-sets-owned-flag", ("string:head.rayStartParams.num-cpus=1 --port=7000",),
     "meshray", ("head.rayStartParams.num-cpus", '"1 --port=7000"', "flag the chart owns")),
    ("raystartparams-value-double-quoted", ('string:head.rayStartParams.resources="x"',),
     "meshray", ("head.rayStartParams.resources", "wrapped in double quotes")),
    ("raystartparams-value-single-quote", ("string:head.rayStartParams.temp-dir=/tmp/it's",),
     "meshray", ("head.rayStartParams.temp-dir", '"/tmp/it\'s"', "single quote")),
    # cluster/_validate_security.tpl
    ("service-account-named-default", ("serviceAccount.name=default",), "meshray",
     ("serviceAccount.name", '"default"', "namespace's own ServiceAccount")),
    ("service-account-shared", ("serviceAccount.create=false", "serviceAccount.name=billing"),
     "meshray", ("serviceAccount.name", '"billing"', "cluster.local/ns/default/sa/billing",
                 "serviceAccount.acknowledgeShared=true")),
    ("pod-security-privileged", ("workerDefaults.securityContext.privileged=true",), "meshray",
     ("workerDefaults.securityContext.privileged", "true",
      "podSecurity.acknowledgeUnrestricted=true")),
    # mesh/_validate_capture.tpl
    ("mesh-capture-override", ("head.annotations.sidecar\\.istio\\.io/interceptionMode=NONE",),
     "meshray", ("head.annotations.sidecar.istio.io/interceptionMode", '"NONE"',
                 "mesh.acknowledgeCaptureOverrides=true")),
    # gateway/_validate.tpl, gatewayapi/_validate.tpl: gateway auth that holds
    ("gateway-jwt-on-plain-http", ("gateway.enabled=true", "gateway.routes.dashboard.enabled=true",
                                   "gateway.routes.dashboard.host=ray.example.com",
                                   *(f"gateway.{s}" for s in JWT), "gateway.auth.audiences={ray}"),
     "meshray", ("gateway.http.enabled", "true", "JWT-protected dashboard route",
                 '"https://issuer"', "gateway.http.httpsRedirect=true")),
    ("gateway-jwt-without-audiences", ("gateway.enabled=true", "gateway.http.enabled=false",
                                       "gateway.https.enabled=true",
                                       "gateway.https.credentialName=tls",
                                       "gateway.routes.dashboard.enabled=true",
                                       "gateway.routes.dashboard.host=ray.example.com",
                                       *(f"gateway.{s}" for s in JWT)),
     "meshray", ("gateway.auth.audiences", "[]", '"https://issuer"',
                 "gateway.auth.acknowledgeAnyAudience=true")),
    ("gateway-jwt-spares-the-gateway", ("gateway.enabled=true", "gateway.http.enabled=false",
                                        "gateway.https.enabled=true",
                                        "gateway.https.credentialName=tls",
                                        "gateway.routes.dashboard.enabled=true",
                                        "gateway.routes.dashboard.host=ray.example.com",
                                        *(f"gateway.{s}" for s in JWT),
                                        "gateway.auth.audiences={ray}",
                                        "mesh.authorizationPolicy.dashboardPrincipals={*}"),
     "meshray", ("mesh.authorizationPolicy.dashboardPrincipals[0]", '"*"',
                 "gateway's own principal")),
    ("gatewayapi-jwt-on-plain-http", (*GA_JWT_DASH,
                                    "gatewayAPI.http.enabled=true",
                                      *(f"gatewayAPI.{s}" for s in JWT),
                                      "gatewayAPI.auth.audiences={ray}"),
     "meshray", ("gatewayAPI.http.enabled", "true", "JWT-protected dashboard route",
                 '"https://issuer"')),
    ("gatewayapi-jwt-without-audiences", (*GA_JWT_DASH,
                                        *(f"gatewayAPI.{s}" for s in JWT)),
     "meshray", ("gatewayAPI.auth.audiences", "[]",
                 "gatewayAPI.auth.acknowledgeAnyAudience=true")),
    ("gatewayapi-jwt-spares-the-gateway", (*GA_JWT_DASH,
                                         *(f"gatewayAPI.{s}" for s in JWT),
                                           "gatewayAPI.auth.audiences={ray}",
                                           "gatewayAPI.authorizationPolicy.enabled=true",
                                           "gatewayAPI.authorizationPolicy.extraPrincipals={*-istio}"),
     "meshray", ("gatewayAPI.authorizationPolicy.extraPrincipals[0]", '"*-istio"',
                 "gateway's own principal")),
    # cluster/_validate_workload.tpl: the workload kind and a RayJob's fields
    ("kuberay-version-lacks-field", ("kuberay.version=1.5.0", "kuberay.upgradeStrategy=Recreate"),
     "meshray",
     ("kuberay.upgradeStrategy", "needs KubeRay >= 1.6.0", '"1.5.0"')),
    ("rayjob-field-on-raycluster", ("rayJob.entrypoint=python job.py",), "meshray",
     ("rayJob.entrypoint", '"python job.py"', "workload.kind=RayJob")),
    ("rayjob-name-over-47", ("workload.kind=RayJob", "rayJob.entrypoint=python job.py",
                             f"clusterName={'j' * 48}"), "meshray",
     ("clusterName", "j" * 48, "48 characters", "over 47")),
    ("rayjob-no-entrypoint", ("workload.kind=RayJob",), "meshray",
     ("rayJob.entrypoint", "empty", "K8sJobMode")),
    ("rayjob-ttl-without-shutdown", (*RJ, "rayJob.shutdownAfterJobFinishes=false",
                                     "rayJob.ttlSecondsAfterFinished=30"), "meshray",
     ("rayJob.ttlSecondsAfterFinished", "30", "shutdownAfterJobFinishes=true")),
    ("rayjob-suspend-without-shutdown", (*RJ, "rayJob.shutdownAfterJobFinishes=false",
                                         "rayJob.suspend=true"), "meshray",
     ("rayJob.suspend", "true", "shutdownAfterJobFinishes=true")),
    ("rayjob-deletion-rules-with-shutdown",
     (*RJ, "rayJob.deletionStrategy.deletionRules[0].policy=DeleteCluster"), "meshray",
     ("rayJob.deletionStrategy.deletionRules", "shutdownAfterJobFinishes=true")),
    ("rayjob-interactive-retries", ("workload.kind=RayJob", "rayJob.submissionMode=InteractiveMode",
                                    "rayJob.backoffLimit=2"), "meshray",
     ("rayJob.backoffLimit", "2", "InteractiveMode")),
    ("rayjob-submitter-config-http", (*RJ, "rayJob.submissionMode=HTTPMode",
                                      "rayJob.submitterConfig.backoffLimit=1"), "meshray",
     ("rayJob.submitterConfig", "HTTPMode", "K8sJobMode only")),
    ("rayjob-submitter-template-http", (*RJ, "rayJob.submissionMode=HTTPMode",
                                        "rayJob.submitterPodTemplate.spec.nodeName=n1"), "meshray",
     ("rayJob.submitterPodTemplate", "HTTPMode", "K8sJobMode only")),
    ("rayjob-sidecar-mode-restricted", (*RJ, "rayJob.submissionMode=SidecarMode"), "meshray",
     ("rayJob.submissionMode", "SidecarMode", "securityContext", "K8sJobMode")),
    ("rayjob-existing-cluster-suspend", (*RJ, "rayJob.clusterSelector.ray\\.io/cluster=shared",
                                         "rayJob.suspend=true"), "meshray",
     ("rayJob.suspend", "true", "rayJob.clusterSelector")),
    ("rayjob-existing-cluster-retries", (*RJ, "rayJob.clusterSelector.ray\\.io/cluster=shared",
                                         "rayJob.backoffLimit=1"), "meshray",
     ("rayJob.backoffLimit", "1", "rayJob.clusterSelector")),
    ("rayjob-existing-cluster-sidecar-mode", (*RJ, "rayJob.clusterSelector.ray\\.io/cluster=shared",
                                              "rayJob.submissionMode=SidecarMode",
                                              "podSecurity.enabled=false",
                                              "podSecurity.acknowledgeUnrestricted=true"),
     "meshray",
     ("rayJob.submissionMode", "SidecarMode", "rayJob.clusterSelector")),
    ("rayjob-existing-cluster-gateway", (*RJ, "rayJob.clusterSelector.ray\\.io/cluster=shared",
                                         *GW_ON), "meshray",
     ("gateway.enabled", "true", "rayJob.clusterSelector")),
    ("rayjob-ingress", (*RJ, "ingress.client.enabled=true", "rayTls.enabled=true",
                        "ingress.client.host=ray.example.com"), "meshray",
     ("ingress.client.enabled", "true", "generated name")),
    ("rayjob-classic-sidecar", (*RJ, "mesh.nativeSidecar=false"), "meshray",
     ("mesh.nativeSidecar", "false", "istio#11045")),
    ("rayjob-submitter-istio-label",
     (*RJ, "rayJob.submitterPodTemplate.metadata.labels.sidecar\\.istio\\.io/inject=false"),
     "meshray", ("rayJob.submitterPodTemplate.metadata.labels.sidecar.istio.io/inject",
                 '"false"')),
    ("rayjob-submitter-restart-always",
     (*RJ, "rayJob.submitterPodTemplate.spec.restartPolicy=Always"), "meshray",
     ("rayJob.submitterPodTemplate.spec.restartPolicy", '"Always"')),
    ("rayjob-submitter-ray-identity",
     (*RJ, "rayJob.submitterPodTemplate.spec.serviceAccountName=meshray-ray"), "meshray",
     ("rayJob.submitterPodTemplate.spec.serviceAccountName", '"meshray-ray"', "GCS and raylets")),
]


@pytest.mark.parametrize(("set_values", "release", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_values_fail_with_key_and_value(set_values: tuple[str, ...], release: str,
                                            expected: tuple[str, ...]) -> None:
    strings = tuple(v.removeprefix("string:") for v in set_values if v.startswith("string:"))
    plain = tuple(v for v in set_values if not v.startswith("string:"))
    with pytest.raises(RenderError) as err:
        render(RenderRequest(set_values=plain, set_string_values=strings, release=release,
                             chart=CHART))
    for text in expected:
        assert text in err.value.message, (text, err.value.message)
    assert "execution error" not in err.value.message  # the helm noise is stripped


def template_texts() -> dict[str, str]:
    templates = CHART / "templates"
    return {str(p.relative_to(templates)): p.read_text()
            for p in sorted(templates.rglob("*")) if p.is_file()}


def rule_families() -> dict[str, str]:
    """Each rule family's define, by name: its text up to the next define of its file."""
    out: dict[str, str] = {}
    for text in template_texts().values():
        starts = list(re.finditer(r'\{\{- define "([^"]+)"', text))
        ends = [m.start() for m in starts[1:]] + [len(text)] if starts else []
        for m, end in zip(starts, ends, strict=True):
            if m.group(1).startswith("meshray.validate."):
                out[m.group(1).removeprefix("meshray.validate.")] = text[m.start():end]
    return out


def test_every_problem_in_the_chart_has_a_case() -> None:
    """Counting guard: each place a rule family adds a message needs a case above. A family
    that reads the live cluster (lookup) cannot fire under `helm template`, where lookup
    returns nothing: its messages are the cluster suite's (tests/cluster/)."""
    families = rule_families()
    assert len(families) > 10, sorted(families)
    sites = sum(body.count("$problems = append $problems") for body in families.values()
                if 'lookup "' not in body)
    total = sum(t.count("$problems = append $problems") for t in template_texts().values())
    live = sum(body.count("$problems = append $problems") for body in families.values()
               if 'lookup "' in body)
    assert sites + live == total, "a message site outside a rule family"
    # One message has a second case (node-ip-address, beside the pinned port flags), and one
    # case is the shared switched-off helper's (meshray.offSettings), outside any family.
    assert sites == len(CASES) - 2, f"{sites} messages in templates, {len(CASES)} cases"


def test_the_chart_fails_in_one_place() -> None:
    """Rule families return messages; only validate.yaml calls `fail`, once, with all of them."""
    calls = {name: len(re.findall(r"\{\{-?\s*fail\b", text))
             for name, text in template_texts().items()}
    assert {name: n for name, n in calls.items() if n} == {"validate.yaml": 1}


def test_every_rule_family_runs() -> None:
    """A family defined but missing from meshray.validate.families would never report."""
    texts = "".join(template_texts().values())
    defined = set(re.findall(r'define "meshray\.validate\.(\w+)"', texts)) - {"families"}
    listed = re.search(
        r'define "meshray\.validate\.families" -\}\}\s*\{\{- toJson \(list ([^)]*)\)', texts)
    assert listed, "meshray.validate.families not found"
    assert sorted(re.findall(r'"(\w+)"', listed.group(1))) == sorted(defined)


# Independent mistakes, each in a different rule family, and the message each one must produce.
SEVERAL_MISTAKES: dict[str, object] = {
    "ports": {"objectManager": 6380, "workerPortList": [12000, 12001, 12000]},
    "head": {"rayStartParams": {"node-ip-address": "10.0.0.1"}, "labels": {"ray.io/group": "x"}},
    "workerGroups": {"cpu": {"replicas": 5, "maxReplicas": 2,
                             "env": [{"name": "RAY_SERVE_ENABLE_HA_PROXY", "value": "true"}]}},
    "mtls": {"portLevelMtls": [{"port": 9999, "mode": "PERMISSIVE"}]},
    "ingress": {"dashboard": {"enabled": True}},
    "gateway": {"enabled": True},
}
SEVERAL_MESSAGES = [
    'clusterName: empty, so the release name "9lives" names the cluster: "9lives-meshray" is '
    'not a DNS-1035 label',
    "ports.workerPortList: port 12000 is listed twice",
    "ports.objectManager: port 6380 is already used by ports.nodeManager",
    'head.rayStartParams.node-ip-address: "10.0.0.1" overrides a port the chart pins',
    'head.labels.ray.io/group: "x": KubeRay (ray.io/) or the chart (meshray.io/) sets',
    "workerGroups.cpu.replicas: 5 is outside minReplicas..maxReplicas (1..2)",
    "mtls.portLevelMtls: port 9999 is not a port the Ray pods listen on",
    'ingress.dashboard.auth.type: "none": the dashboard and Jobs API execute arbitrary code',
    'workerGroups.cpu.env: RAY_SERVE_ENABLE_HA_PROXY="true" makes Ray Serve bind',
    "gateway.routes: gateway.enabled=true but no route is enabled",
]


def helm() -> str:
    return os.environ.get("MESHRAY_HELM") or str(REPO / "bin" / "helm")


def test_several_mistakes_are_all_reported_in_one_helm_error(tmp_path: Path) -> None:
    """Every problem at once: one `helm template` run names every mistake of the file, one
    message per line, in rule-family order, instead of stopping at the first."""
    values = tmp_path / "several.yaml"
    values.write_text(yaml.safe_dump(SEVERAL_MISTAKES))
    proc = subprocess.run([helm(), "template", "9lives", str(CHART), "-f", str(values)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.count("Error:") == 1 and proc.stderr.count("execution error") == 1
    with pytest.raises(RenderError) as err:
        render(RenderRequest(values_files=(values,), release="9lives", chart=CHART))
    lines = err.value.message.splitlines()
    assert len(lines) == len(SEVERAL_MESSAGES), lines
    for line, expected in zip(lines, SEVERAL_MESSAGES, strict=True):
        assert line.startswith(expected), (expected, line)
    # The block is made to be read by a program too: a fixed first line counting the problems,
    # then exactly that many "key: problem" lines, which the CLI takes as they are.
    header = (f"meshray refused these values ({len(SEVERAL_MESSAGES)} problem(s), one per line "
              "as key: problem):")
    block = proc.stderr.split(header + "\n", 1)
    assert len(block) == 2, proc.stderr
    raw = block[1].splitlines()[: len(SEVERAL_MESSAGES)]
    assert [ln.split(": ", 1)[0] for ln in raw] == [m.split(": ", 1)[0] for m in SEVERAL_MESSAGES]
    assert err.value.problems == [tuple(ln.split(": ", 1)) for ln in raw]


def test_a_refusal_block_whose_count_does_not_match_is_not_read_as_one() -> None:
    """The count is what makes the block safe to read: a truncated block is helm's text, not
    problems with keys."""
    header = "meshray refused these values (3 problem(s), one per line as key: problem):"
    assert chart_refusals(f"{header}\na.b: one\nc.d: two") is None
    assert chart_refusals(f"{header}\na.b: one\nc.d: two\ne: three") == [
        ("a.b", "one"), ("c.d", "two"), ("e", "three")]
    assert chart_refusals("a.b: one") is None


def test_no_message_holds_a_newline() -> None:
    """One problem per line is the block's contract: no message literal of a rule family may
    contain a newline escape (a message built from values is one line, as values are checked
    to be)."""
    checked = []
    for name, text in template_texts().items():
        for msg in re.findall(r'\$problems = append \$problems (.*?) -\}\}', text):
            assert "\\n" not in msg, (name, msg)
            checked.append(msg)
    assert any("clusterDomain" in m for m in checked), "the message pattern no longer matches"


def test_a_repeated_duplicate_is_reported_once() -> None:
    """Collecting every message must not repeat one: a port listed three times is one problem."""
    with pytest.raises(RenderError) as err:
        render(RenderRequest(set_values=("ports.workerPortList={12000,12000,12000,12001,12001}",),
                             chart=CHART))
    assert err.value.message.splitlines() == [
        "ports.workerPortList: port 12000 is listed twice",
        "ports.workerPortList: port 12001 is listed twice",
    ]


def test_ray_tls_listener_ceiling_is_a_sidecar_cost(render_chart: Renderer) -> None:
    """rayTls.maxListeners counts listeners in Ray sidecars; with the ambient dataplane there are
    none, so the same cluster renders (and with sidecars it is refused, as in CASES)."""
    big = ("rayTls.enabled=true", "workerDefaults.maxReplicas=40")
    with pytest.raises(RenderError, match=r"rayTls\.maxListeners"):
        render(RenderRequest(set_values=big, chart=CHART))
    docs = render_chart(set_values=(*big, "mesh.dataplane=ambient"))
    assert not [d for d in docs if d["kind"] == "Sidecar"]


def test_good_values_still_render(render_chart: Renderer) -> None:
    """The cases above differ from a valid render only in the offending value."""
    docs = render_chart(set_values=("workerGroups.cpu.replicas=2", "workerGroups.cpu.maxReplicas=2",
                                    "ingress.dashboard.enabled=true",
                                    "ingress.dashboard.auth.type=external",
                                    "ingress.dashboard.auth.externalUrl=http://oauth2/auth"))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["AuthorizationPolicy", "Ingress", "PeerAuthentication", "RayCluster",
                     "Service", "ServiceAccount", "Sidecar", "Sidecar"]
