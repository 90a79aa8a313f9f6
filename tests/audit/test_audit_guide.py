"""`meshray audit` on the KubeRay guide's own YAML fails; on every render of the chart it passes.

The guide's objects are the project's copy in tests/fixtures/guide/ (taken from the guide's
`kubectl apply -f - <<EOF` heredocs, as its header says), so the test runs on any clone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from chart_support import CHART, EXAMPLES, REPO
from meshray.cli import main
from meshray.render import RenderRequest, render_text

# The guide's objects, as the project's own copy (tests/fixtures/guide/, where the header says
# how they were taken from the guide), so the test runs on any clone.
GUIDE = REPO / "tests" / "fixtures" / "guide" / "kuberay-istio-guide.yaml"


def guide_yaml() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    kinds = set(re.findall(r"^kind: (\w+)$", text, re.MULTILINE))
    assert kinds >= {"Service", "RayCluster"}, f"the guide's objects are missing (found: {kinds})"
    return text


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
