#!/usr/bin/env python3
"""Scan the pod templates inside RayClusters with checkov (a static Kubernetes scanner).

Static scanners do not look inside a RayCluster (REFERENCE §6): they know Pods, Deployments
and the like, not ``spec.headGroupSpec.template``. This script turns every head and worker
group template of every RayCluster in a render into a plain ``v1/Pod`` (metadata from the
template, named ``<cluster>-<group>``) and runs checkov's Kubernetes checks over them.

checkov is pinned here and installed into its own virtualenv under ``.cache/`` (``install``):
its dependencies pin ``packaging`` below what pytest 9 needs, so it cannot share ``.venv``.

    checkov_scan.py install                     # .cache/checkov-<version>/bin/checkov
    checkov_scan.py scan RENDER.yaml...         # findings (check, resource, title); 1 if any
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from meshray.raymodel import cluster_from

CHECKOV_VERSION = "3.3.30"
REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".cache" / f"checkov-{CHECKOV_VERSION}"


def checkov_binary() -> Path:
    """The pinned checkov ($MESHRAY_CHECKOV overrides)."""
    return Path(os.environ.get("MESHRAY_CHECKOV") or VENV / "bin" / "checkov")


def install() -> Path:
    """Create the isolated virtualenv with the pinned checkov, unless it is there already."""
    binary = checkov_binary()
    if binary.is_file():
        return binary
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "--quiet", f"checkov=={CHECKOV_VERSION}"], check=True
    )
    return binary


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def pods_from(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``v1/Pod`` per group template of every RayCluster among ``docs``: the template's
    spec and annotations, its labels plus those KubeRay puts on the pods it creates."""
    pods: list[dict[str, Any]] = []
    for doc in docs:
        if doc.get("kind") != "RayCluster" or not str(doc.get("apiVersion", "")).startswith(
            "ray.io/"
        ):
            continue
        meta = _dict(doc.get("metadata"))
        namespace = str(meta.get("namespace") or "")
        for group in cluster_from(doc, namespace).groups:
            template = group.template
            tmeta = _dict(template.get("metadata"))
            name = f"{meta.get('name')}-{group.name}"
            pod_meta: dict[str, Any] = {"name": name}
            if namespace:
                pod_meta["namespace"] = namespace
            pod_meta["labels"] = group.pod_labels(str(meta.get("name") or ""))
            if tmeta.get("annotations"):
                pod_meta["annotations"] = tmeta["annotations"]
            pods.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": pod_meta,
                    "spec": _dict(template.get("spec")),
                }
            )
    return pods


def scan_input(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What to scan: the Ray pods and the render's NetworkPolicies (checkov's graph check
    CKV2_K8S_6 looks for one selecting each pod)."""
    docs = list(docs)
    netpols = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    return [*pods_from(docs), *netpols]


@dataclass(frozen=True, order=True)
class Finding:
    check_id: str
    resource: str  # checkov's resource id: Pod.<namespace>.<name>
    name: str  # the check's title


def scan(objs: Sequence[dict[str, Any]], binary: Path | None = None) -> list[Finding]:
    """checkov's failed Kubernetes checks over the objects (offline, no external checks)."""
    with tempfile.TemporaryDirectory(prefix="meshray-checkov-") as tmp:
        path = Path(tmp) / "pods.yaml"
        path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
        proc = subprocess.run(
            [
                str(binary or checkov_binary()),
                "--framework",
                "kubernetes",
                "--file",
                str(path),
                "--output",
                "json",
                "--quiet",
                "--compact",
                "--skip-download",
                "--skip-results-upload",
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": ""},
        )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"checkov failed ({proc.returncode}): {proc.stderr.strip()}")
    out = proc.stdout.strip()
    if not out or out == "[]":
        return []
    data = json.loads(out)
    reports = data if isinstance(data, list) else [data]
    found: set[Finding] = set()
    for report in reports:
        if isinstance(report, dict) and report.get("passed") == 0 and report.get("failed") == 0:
            continue  # checkov's empty summary form
        for r in _dict(_dict(report).get("results")).get("failed_checks", []):
            found.add(Finding(str(r["check_id"]), str(r["resource"]), str(r["check_name"])))
    return sorted(found)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="install the pinned checkov under .cache/")
    scan_p = sub.add_parser("scan", help="scan the RayCluster pod templates of rendered files")
    scan_p.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "install":
        print(install())
        return 0
    docs = [d for f in args.files for d in yaml.safe_load_all(f.read_text()) if isinstance(d, dict)]
    findings = scan(scan_input(docs))
    for f in findings:
        print(f"{f.check_id} {f.resource} {f.name}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
