"""The Ray TLS bootstrap, run for real: the init container's script, taken from the rendered
manifest, signs a per-pod certificate with a CA made here, and openssl checks the result."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from chart_support import REPO, Renderer, in_ci

# openssl ships with the Debian base; a CI machine without it must fail, not skip.
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None and not in_ci(),
                                reason="needs openssl")


def openssl(*args: str, cwd: Path) -> str:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def make_ca(directory: Path, name: str) -> None:
    directory.mkdir(parents=True)
    openssl("req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)


def init_script(pod: dict[str, Any]) -> str:
    (init,) = [c for c in pod["template"]["spec"]["initContainers"] if c["name"] == "ray-tls"]
    assert init["command"] == ["/bin/bash", "-c"]
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert mounts == {"ray-tls": "/etc/ray/tls", "ca-tls": "/etc/ca/tls"}
    script: str = init["args"][0]
    return script


def run_bootstrap(script: str, tmp: Path, ca_dir: Path, pod_ip: str) -> Path:
    out_dir = tmp / "ray-tls"
    out_dir.mkdir()
    script = script.replace("/etc/ray/tls", str(out_dir)).replace("/etc/ca/tls", str(ca_dir))
    env = {"MESHRAY_POD_IP": pod_ip, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return out_dir


def test_head_certificate_is_signed_and_names_the_pod(render_chart: Renderer,
                                                      tmp_path: Path) -> None:
    docs = render_chart(REPO / "values-examples/rayclient-ingress-tls.yaml", namespace="ray")
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    make_ca(tmp_path / "ca", "meshray-test-ca")
    out = run_bootstrap(init_script(rc["spec"]["headGroupSpec"]), tmp_path, tmp_path / "ca",
                        "10.244.3.9")
    assert "OK" in openssl("verify", "-CAfile", str(tmp_path / "ca/ca.crt"), "tls.crt", cwd=out)
    text = openssl("x509", "-in", "tls.crt", "-noout", "-text", cwd=out)
    for san in ("IP Address:10.244.3.9", "IP Address:127.0.0.1", "DNS:localhost",
                "DNS:10-244-3-9.ray-client-headless-svc.ray.svc.cluster.local",
                "DNS:ray-client-head-svc.ray.svc.cluster.local",
                "DNS:ray.example.com"):  # the client Ingress host (SNI passthrough)
        assert san in text, san
    # The env Ray reads points at what the script wrote.
    env = {e["name"]: e.get("value") for e in
           rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RAY_USE_TLS"] == "1"
    assert env["RAY_TLS_SERVER_CERT"] == "/etc/ray/tls/tls.crt"
    assert env["RAY_TLS_SERVER_KEY"] == "/etc/ray/tls/tls.key"
    assert env["RAY_TLS_CA_CERT"] == "/etc/ca/tls/ca.crt"


def test_worker_certificate_fails_against_another_ca(render_chart: Renderer,
                                                     tmp_path: Path) -> None:
    """The verification above can fail: a certificate checked against a different CA."""
    docs = render_chart(REPO / "values-examples/rayclient-ingress-tls.yaml")
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    make_ca(tmp_path / "ca", "meshray-test-ca")
    make_ca(tmp_path / "other", "someone-else")
    out = run_bootstrap(init_script(rc["spec"]["workerGroupSpecs"][0]), tmp_path,
                        tmp_path / "ca", "10.244.3.10")
    bad = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "other/ca.crt"),
                          "tls.crt"], cwd=out, capture_output=True, text=True)
    assert bad.returncode != 0
    text = openssl("x509", "-in", "tls.crt", "-noout", "-text", cwd=out)
    assert "ray.example.com" not in text  # only the head serves the client Ingress
