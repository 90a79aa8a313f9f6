"""meshray/audit/versions.py: flags the cluster's Ray version removed, ignores, or cannot tell."""

from __future__ import annotations

from audit_support import (
    Case,
    Mutation,
    cluster,
    head,
    svc,
    worker,
)

CASES: list[Case] = [
    ("flag-removed", "error", lambda d: (
        cluster(d)["spec"].update(rayVersion="2.48.0"),
        head(d)["rayStartParams"].update({"dashboard-grpc-port": "6384"}))),
    ("flag-removed", "error", lambda d: (
        cluster(d)["spec"].update(rayVersion="2.60.0"),
        worker(d)["rayStartParams"].update({"gcs-server-port": "6390"}))),
    ("flag-unused", "warning",
     lambda d: head(d)["rayStartParams"].update({"dashboard-grpc-port": "6384"})),
    ("ray-version-unknown", "info", lambda d: (
        cluster(d)["spec"].pop("rayVersion"),
        head(d)["template"]["spec"]["containers"][0].update(image="my/ray:latest"))),
]


CLEAN_VARIANTS: list[tuple[str, Mutation]] = [
    # Ray < 2.45 with the dashboard gRPC port pinned and declared
    ("old ray, dashboard grpc pinned", lambda d: (
        cluster(d)["spec"].update(rayVersion="2.10.0"),
        head(d)["rayStartParams"].update({"dashboard-grpc-port": "6384"}),
        svc(d)["spec"]["ports"].append(
            {"name": "dashboard-grpc-port", "port": 6384, "appProtocol": "grpc"}))),
    # the version can come from the image tag
    ("version from image", lambda d: cluster(d)["spec"].pop("rayVersion")),
]
