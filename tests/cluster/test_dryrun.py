"""Bad values against the real API server: `helm install --dry-run=server`.

Every bad-values case of tests/render/test_render_failures.py must be refused the same way when helm
talks to a real API server (the chart's own message, naming key and value), so a server-side
dry run in a pipeline (Argo CD, Flux, `helm upgrade --dry-run=server`) says what the chart says.

SERVER_ONLY lists mistakes the chart's schema and checks let through today and that only the
API server refuses (the CRD's OpenAPI schema or object-meta validation): each must be refused by
the server with a message naming the field, so that what only the server catches is known.
Measured: Helm's own `--dry-run=server` accepts every one of them, because it only lets the
templates `lookup` live objects and never submits the objects; the objects themselves are
submitted with `kubectl create --dry-run=server` (dryRun=All: validated and admitted, not
stored).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cases import OPERATOR_SETS
from kube import CHART, HELMS, REPO, Cluster, Helm
from refusal_cases import CASES

# (id, helm args, substrings of the server's refusal). Quantities with a space, invalid label
# and annotation keys, env entries without a name and a string runAsUser were here too: the
# values schema refuses them now (tests/fixtures/values-corpus/bad/), the pod-spec fields from
# Kubernetes' own definitions (tools/ecosystem/passthrough_schema.py). Measured: inside the
# RayCluster's pod templates the API server checks only the CRD's structural schema, so a
# 64-character pod label value or requests above limits pass it (the operator's Pod create
# fails later); on the chart's own objects' metadata the server refuses them. A 64-character
# label value was here too: the schema bounds label keys and values to 63 characters now. The
# annotations' total size (256 KiB per object) is still the server's alone.
SERVER_ONLY: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (
        "annotations-too-large",
        # three 100 kB values: one command-line argument may not exceed 128 KiB
        tuple(a for i in range(3)
              for a in ("--set", f"commonAnnotations.example\\.com/blob{i}=" + "a" * 100_000)),
        ("metadata.annotations", "Too long"),
    ),
]


def _sets(version: str) -> list[str]:
    return [a for s in OPERATOR_SETS.get(version, ()) for a in ("--set", s)]


@pytest.mark.parametrize(
    ("set_values", "release", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_server_dry_run_refuses_bad_values_like_the_chart(
    cluster: Cluster, set_values: tuple[str, ...], release: str, expected: tuple[str, ...]
) -> None:
    helm = Helm(HELMS["helm4"], cluster.kubeconfig)
    args = [
        a
        for s in set_values
        for a in (("--set-string", s.removeprefix("string:")) if s.startswith("string:")
                  else ("--set", s))
    ]
    res = helm.run(
        "install",
        release,
        str(CHART),
        "-n",
        "default",
        "--dry-run=server",
        *_sets(cluster.version),
        *args,
        check=False,
    )
    assert res.returncode != 0, "accepted by a server-side dry run"
    for text in expected:
        assert text in res.stderr, (text, res.stderr)


@pytest.mark.parametrize(
    ("args", "expected"), [c[1:] for c in SERVER_ONLY], ids=[c[0] for c in SERVER_ONLY]
)
def test_server_refuses_what_only_it_checks(
    cluster: Cluster, args: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    helm = Helm(HELMS["helm4"], cluster.kubeconfig)
    sets = _sets(cluster.version)
    # Helm's --dry-run=server does not submit objects: it passes what the server refuses.
    res = helm.run(
        "install", "srv", str(CHART), "-n", "default", "--dry-run=server", *sets, *args, check=False
    )
    assert res.returncode == 0, res.stderr
    rendered = helm.run("template", "srv", str(CHART), "-n", "default", *sets, *args).stdout
    res = subprocess.run(
        [
            str(REPO / "bin" / "kubectl"),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "create",
            "--dry-run=server",
            "-n",
            "default",
            "-f",
            "-",
        ],
        input=rendered,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode != 0, "the server accepted it"
    for text in expected:
        assert text in res.stderr, (text, res.stderr)


def server_dry_run(cluster: Cluster, rendered: str) -> subprocess.CompletedProcess[str]:
    """Submit rendered objects with dryRun=All: validated and admitted, not stored."""
    return subprocess.run(
        [str(REPO / "bin" / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "create",
         "--dry-run=server", "-n", "default", "-f", "-"],
        input=rendered, capture_output=True, text=True, timeout=60, check=False,
    )


GOOD_CORPUS = sorted((REPO / "tests" / "fixtures" / "values-corpus" / "good").glob("*.yaml"))


@pytest.mark.parametrize("values", GOOD_CORPUS, ids=[p.stem for p in GOOD_CORPUS])
def test_the_server_accepts_every_good_corpus_file(cluster: Cluster, values: Path) -> None:
    """The values schema (pod-spec fields from Kubernetes' definitions, value rules from its
    validation code) must not let through what the API server refuses: every
    good-but-unusual corpus file renders to objects the real API server admits."""
    helm = Helm(HELMS["helm4"], cluster.kubeconfig)
    out = helm.run("template", "corpus", str(CHART), "-n", "default",
                   *_sets(cluster.version), "-f", str(values), check=False)
    if out.returncode != 0:
        # a file for a newer operator (a RayJob field, rayAuth): the chart refuses it for this
        # one's kuberay.version with the release that added the field, before the server would
        assert "needs KubeRay >= " in out.stderr and "kuberay.version" in out.stderr, out.stderr
        return
    rendered = out.stdout
    res = server_dry_run(cluster, rendered)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("created (server dry run)") == rendered.count("\nkind: "), res.stdout


def test_server_dry_run_accepts_the_defaults(cluster: Cluster) -> None:
    helm = Helm(HELMS["helm4"], cluster.kubeconfig)
    res = helm.run(
        "install",
        "ok",
        str(CHART),
        "-n",
        "default",
        "--dry-run=server",
        *_sets(cluster.version),
        check=False,
    )
    assert res.returncode == 0, res.stderr
