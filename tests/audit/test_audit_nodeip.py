"""meshray/audit/nodeip.py: node-ip-address must be a Pod FQDN under the headless Service."""

from __future__ import annotations

from audit_support import (
    Case,
    Mutation,
    both,
    worker,
)

CASES: list[Case] = [
    ("node-ip-missing", "error", lambda d: worker(d)["rayStartParams"].pop("node-ip-address")),
    ("node-ip-not-fqdn", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "${POD_IP//[.:]/-}.demo-headless-svc.default.svc.cluster.local"})),
    ("node-ip-not-fqdn", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "${POD_IP//[.:]/-}.other-svc.ray.svc.cluster.local"})),
    ("node-ip-not-fqdn", "error",
     lambda d: worker(d)["rayStartParams"].update({"node-ip-address": "$POD_IP"})),
    ("node-ip-not-fqdn", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "10-0-0-1.demo-headless-svc.ray.svc.cluster.local"})),
    ("node-ip-not-fqdn", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "${POD_IP}.demo-headless-svc.ray.svc.cluster.local"})),
    ("node-ip-hostname-i", "error", lambda d: worker(d)["rayStartParams"].update(
        {"node-ip-address": "$(hostname -I | tr -d ' ' | sed 's/\\./-/g')"
                            ".demo-headless-svc.ray.svc.cluster.local"})),
    ("node-ip-env-missing", "error",
     lambda d: worker(d)["template"]["spec"]["containers"][0].pop("env")),
    ("node-ip-env-missing", "error",  # a literal value is not the pod's IP
     lambda d: worker(d)["template"]["spec"]["containers"][0].update(
         env=[{"name": "POD_IP", "value": "10.0.0.1"}])),
]


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    # the Pod FQDN may end with a dot and use a custom cluster domain
    ("fqdn variants", both(lambda g: g["rayStartParams"].update(
        {"node-ip-address": "${POD_IP//[.:]/-}.demo-headless-svc.ray.svc.corp.example."}))),
]
