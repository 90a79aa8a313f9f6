"""Helpers (no tests) shared by test_ecosystem*.py and test_gitops*.py: the lint tools in bin/, the
generated schemas in .cache/schemas and the scripts in tools/ecosystem/.

A test that needs a tool skips when the tool is absent, except under CI (CI=true), where it
fails: `make lint-setup` must have installed everything there.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from chart_support import skip_unless_ci

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin"
CHART = REPO / "charts" / "meshray"
ECO = REPO / "tools" / "ecosystem"
GITOPS = REPO / "values-examples" / "gitops"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """Skip locally, fail in CI."""
    skip_unless_ci(f"{what}: run `make lint-setup`")


def tool(relative: str) -> Path:
    path = BIN / relative
    if not path.is_file():
        missing(f"{path} is not installed")
    return path


def helm() -> str:
    explicit = os.environ.get("MESHRAY_HELM")
    if explicit:
        return explicit
    return str(tool("helm"))


def helm3() -> str:
    return os.environ.get("MESHRAY_HELM3") or str(tool("helm3/helm"))


def schemas_dir() -> Path:
    path = Path(os.environ.get("MESHRAY_SCHEMAS") or REPO / ".cache" / "schemas")
    for family in ("k8s-", "kuberay-", "istio-", "argocd-", "fluxcd-helm-", "fluxcd-source-"):
        if not any(path.glob(f"{family}*/")):
            missing(f"no {family}* schema set under {path}")
    return path


def load_script(name: str) -> ModuleType:
    """Import tools/ecosystem/<name>.py (a script directory, not a package)."""
    module_name = f"meshray_ecosystem_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, ECO / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, cwd=cwd)


def helm_template(
    binary: str, values: Path | None = None, *extra: str, namespace: str = "ray"
) -> str:
    args = [binary, "template", "meshray", str(CHART), "--namespace", namespace]
    if values is not None:
        args += ["--values", str(values)]
    proc = run([*args, *extra])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
