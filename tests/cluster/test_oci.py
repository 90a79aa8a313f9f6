"""The chart as it ships: `helm package --sign`, `helm verify`, `helm push` to a real OCI
registry (CNCF distribution, built from its Go module, on loopback) and `helm install oci://`
into the local API server, where the operator's Pods must pass the port oracle.

The signing key is made by the test with GnuPG in a throwaway home; Helm reads the exported
keyrings. A second, unrelated key must fail `helm verify`, so the check can fail.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cases import OPERATOR_SETS
from controlplane import free_port
from kube import CHART, HELMS, REPO, Cluster, Helm, ray_pods, running, wait_for
from kubernetes import client
from oracle import check_cluster

REGISTRY = REPO / "bin" / "registry"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("registry")
    port = free_port()
    (d / "config.yml").write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(d / "data")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    with open(d / "registry.log", "wb") as log:
        proc = subprocess.Popen(
            [str(REGISTRY), "serve", str(d / "config.yml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (d / "registry.log").read_text()
            assert time.monotonic() < deadline, "registry did not come up"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _gpg_key(home: Path, name: str) -> tuple[Path, Path]:
    home.mkdir(mode=0o700, parents=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            f"{name} <{name.replace(' ', '-')}@meshray.invalid>",
            "rsa2048",
            "sign",
            "1d",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    sec, pub = home / "secring.gpg", home / "pubring.gpg"
    sec.write_bytes(
        subprocess.run(
            ["gpg", "--batch", "--export-secret-keys"], env=env, check=True, capture_output=True
        ).stdout
    )
    pub.write_bytes(
        subprocess.run(
            ["gpg", "--batch", "--export"], env=env, check=True, capture_output=True
        ).stdout
    )
    return sec, pub


def test_signed_chart_from_an_oci_registry_installs(
    cluster: Cluster, registry: str, tmp_path: Path
) -> None:
    helm = Helm(HELMS["helm4"], cluster.kubeconfig)
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    sec, pub = _gpg_key(tmp_path / "gpg", "meshray release")
    _, other_pub = _gpg_key(tmp_path / "gpg-other", "someone else")
    out = tmp_path / "dist"
    helm.run(
        "package",
        str(CHART),
        "-d",
        str(out),
        "--sign",
        "--key",
        "meshray release",
        "--keyring",
        str(sec),
    )
    tgz = out / f"meshray-{version}.tgz"
    assert tgz.exists() and Path(f"{tgz}.prov").exists()
    helm.run("verify", str(tgz), "--keyring", str(pub))
    bad = helm.run("verify", str(tgz), "--keyring", str(other_pub), check=False)
    assert bad.returncode != 0, "verify accepted a signature from an unrelated key"

    helm.run("push", str(tgz), f"oci://{registry}/charts", "--plain-http")
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    helm.run(
        "pull",
        f"oci://{registry}/charts/meshray",
        "--version",
        version,
        "--plain-http",
        "-d",
        str(pulled),
    )
    assert (pulled / tgz.name).read_bytes() == tgz.read_bytes()

    ns = f"oci-{cluster.version.replace('.', '-')}"
    sets = [a for s in OPERATOR_SETS.get(cluster.version, ()) for a in ("--set", s)]
    helm.run(
        "install",
        "oci",
        f"oci://{registry}/charts/meshray",
        "--version",
        version,
        "--plain-http",
        "-n",
        ns,
        "--create-namespace",
        *sets,
    )
    core = client.CoreV1Api(cluster.api)
    name = "oci-meshray"
    wait_for("2 running pods", lambda: len(p := ray_pods(core, ns, name)) == 2 and running(p))
    problems, _ = check_cluster(core, ns, name)
    assert problems == []
    helm.run("uninstall", "oci", "-n", ns)
