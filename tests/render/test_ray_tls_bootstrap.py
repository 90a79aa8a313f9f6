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
    assert env["RAY_TLS_CA_CERT"] == "/etc/ray/tls/ca.crt"
    # ...and the CA certificate Ray reads is the CA's, copied by the script beside the pod's key.
    assert (out / "ca.crt").read_text() == (tmp_path / "ca/ca.crt").read_text()


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


def secret_files_seen(pod: dict[str, Any], container: str) -> dict[str, set[str]]:
    """The Secret keys each Secret volume shows to one container of a pod template: every key,
    or only the keys its `items` list (read from the manifest, as the kubelet mounts it)."""
    spec = pod["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    (c,) = [c for c in spec.get("initContainers", []) + spec["containers"]
            if c["name"] == container]
    seen: dict[str, set[str]] = {}
    for m in c.get("volumeMounts", []):
        secret = volumes[m["name"]].get("secret")
        if secret is not None:
            items = secret.get("items")
            keys = {i["key"] for i in items} if items else {"*"}
            seen.setdefault(secret["secretName"], set()).update(keys)
    return seen


def test_ca_key_stays_in_the_init_container(render_chart: Renderer, tmp_path: Path) -> None:
    """With Ray TLS, only the ray-tls init container mounts the CA Secret (ca.key signs peer
    certificates); the Ray containers get the CA certificate through the init container's
    emptyDir, so a job's code cannot mint certificates. The bootstrap leaves no key of the CA
    behind in that emptyDir."""
    docs = render_chart(REPO / "values-examples/rayclient-ingress-tls.yaml")
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    groups = [("ray-head", rc["spec"]["headGroupSpec"])]
    groups += [("ray-worker", g) for g in rc["spec"]["workerGroupSpecs"]]
    for name, group in groups:
        assert secret_files_seen(group, name) == {}, name
        assert secret_files_seen(group, "ray-tls") == {"ca-tls": {"*"}}, name
    make_ca(tmp_path / "ca", "meshray-test-ca")
    out = run_bootstrap(init_script(rc["spec"]["headGroupSpec"]), tmp_path, tmp_path / "ca",
                        "10.244.3.9")
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "san.cnf", "tls.crt", "tls.key"]
    key = (tmp_path / "ca/ca.key").read_text()
    assert all(p.read_text() != key for p in out.iterdir())


def test_ca_key_check_sees_a_ray_container_mount(render_chart: Renderer) -> None:
    """Negative control: the check above reports the CA Secret when a Ray container mounts it
    (as the chart did before), whole or by an item list naming ca.key."""
    docs = render_chart(REPO / "values-examples/rayclient-ingress-tls.yaml")
    head = next(d for d in docs if d["kind"] == "RayCluster")["spec"]["headGroupSpec"]
    ray = head["template"]["spec"]["containers"][0]
    ray.setdefault("volumeMounts", []).append({"name": "ca-tls", "mountPath": "/etc/ca/tls"})
    assert secret_files_seen(head, "ray-head") == {"ca-tls": {"*"}}
    head["template"]["spec"]["volumes"].append(
        {"name": "ca-only", "secret": {"secretName": "ca-tls",
                                       "items": [{"key": "ca.key", "path": "k"}]}})
    ray["volumeMounts"] = [{"name": "ca-only", "mountPath": "/x"}]
    assert secret_files_seen(head, "ray-head") == {"ca-tls": {"ca.key"}}
