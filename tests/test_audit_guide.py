"""`meshray audit` on the KubeRay guide's own YAML fails; on every render of the chart it passes.

The guide's manifests are extracted at test time from the guide itself (the heredocs fed to
`kubectl apply -f - <<EOF`), with bash's heredoc unescaping of ``\\$``, so the test follows the
guide rather than a copy of it.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from chart_support import CHART, EXAMPLES, SHARED, skip_unless_ci
from meshray.cli import main
from meshray.render import RenderRequest, render_text

GUIDE = SHARED / "reference" / "seeds" / "kuberay-istio-mtls-l7-guide.md"
HEREDOC = re.compile(r"<<\s*EOF\n(.*?)\n[ \t]*EOF\n", re.DOTALL)


def guide_yaml() -> str:
    if not GUIDE.is_file():
        skip_unless_ci(f"{GUIDE} not present (../shared is outside the repository)")
    blocks = [textwrap.dedent(b).replace("\\$", "$")
              for b in HEREDOC.findall(GUIDE.read_text(encoding="utf-8"))]
    # keep only Kubernetes objects the guide applies (skip the IstioOperator install config)
    docs = [b for b in blocks if re.search(r"^kind: (Service|RayCluster|PeerAuthentication)$",
                                           b, re.MULTILINE)]
    kinds = {k for b in docs for k in re.findall(r"^kind: (\w+)$", b, re.MULTILINE)}
    assert kinds >= {"Service", "RayCluster"}, (
        f"the guide no longer has its Service and RayCluster heredocs (found: {kinds})")
    return "\n---\n".join(docs)


@pytest.fixture
def guide_file(tmp_path: Path) -> Path:
    path = tmp_path / "guide.yaml"
    path.write_text(guide_yaml())
    return path


def test_guide_fails_with_the_known_defects(guide_file: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--format", "json", str(guide_file)]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    errors = [f for f in findings if f["severity"] == "error"]
    wrong = [f for f in errors if f["check"] == "app-protocol-wrong"]
    assert [(f["kind"], f["name"], f["value"]) for f in wrong] == [
        ("Service", "raycluster-istio-headless-svc", "grpc")]
    assert "6382" in wrong[0]["message"] and "HTTP" in wrong[0]["message"]
    hostname = [f for f in errors if f["check"] == "node-ip-hostname-i"]
    assert {f["key"] for f in hostname} == {
        "spec.headGroupSpec.rayStartParams.node-ip-address",
        "spec.workerGroupSpecs[0].rayStartParams.node-ip-address"}
    assert all("hostname -I" in f["value"] for f in hostname)


def test_guide_text_output(guide_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(guide_file)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("error: Service/raycluster-istio-headless-svc ")
               and "6382" in line and "fix: set appProtocol: http" in line for line in out)


def test_guide_service_alone_from_stdin(guide_file: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(guide_file.read_text()))
    assert main(["audit", "-", "--min-severity", "error"]) == 1
    assert all(line.startswith("error: ") for line in capsys.readouterr().out.splitlines())


RENDERS = [None, *EXAMPLES]


@pytest.mark.parametrize("values", RENDERS, ids=["defaults", *[p.stem for p in EXAMPLES]])
@pytest.mark.parametrize("namespace", ["default", "team-a"])
def test_every_render_audits_clean(values: Path | None, namespace: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    text = render_text(RenderRequest(values_files=[values] if values else [], chart=CHART,
                                     namespace=namespace))
    out = tmp_path / "render.yaml"
    out.write_text(text)
    code = main(["audit", "--namespace", namespace, str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "error:" not in printed
