"""`meshray docs`: the values reference and checks tables, their markers, and drift in every
file that carries them (the chart's README, docs/values.md, docs/cli.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from chart_support import CHART, REPO
from meshray import docs
from meshray.cli import main
from meshray.schema import load
from meshray.valuesfile import descriptions

SCHEMA = """\
name: str()
ports:
  gcs: int(min=1024, max=65535)
  list: list(int(), required=False)
mode: enum('A', 'B')
labels: map(str(), key=str())
"""

VALUES = """\
# -- The name.
name: demo
ports:
  # -- GCS port, head only.
  # Continued | with a pipe.
  gcs: 6379
# A plain comment is not a description.
mode: A
# -- Free-form labels.

labels: {}
"""


def test_descriptions_follow_helm_docs() -> None:
    assert descriptions(VALUES) == {
        "name": "The name.",
        "ports.gcs": "GCS port, head only. Continued | with a pipe.",
    }


def test_table(tmp_path: Path) -> None:
    p = tmp_path / "s.yamale"
    p.write_text(SCHEMA)
    import yaml

    table = docs.table(load(p), yaml.safe_load(VALUES), descriptions(VALUES))
    assert table.splitlines() == [
        "| Key | Type | Default | Description |",
        "|---|---|---|---|",
        '| `name` | string | `"demo"` | The name. |',
        "| `ports.gcs` | int (1024-65535) | `6379` | GCS port, head only. Continued \\| with a "
        "pipe. |",
        "| `ports.list` | list[int] | `(unset)` |  |",
        '| `mode` | enum: A \\| B | `"A"` |  |',
        "| `labels` | map[string]string | `{}` |  |",
    ]


def test_splice_replaces_only_between_markers() -> None:
    readme = f"intro\n{docs.START}\nold table\n{docs.END}\noutro\n"
    new = docs.splice(readme, "| t |\n")
    assert new.startswith(f"intro\n{docs.START}\n") and new.endswith(f"{docs.END}\noutro\n")
    assert "old table" not in new and "| t |" in new
    assert docs.splice(new, "| t |\n") == new


@pytest.mark.parametrize("text", ["no markers\n", f"{docs.END}\n{docs.START}\n"])
def test_bad_markers_are_a_clean_error(tmp_path: Path, text: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(text)
    assert main(["docs", "--readme", str(readme)]) == 2
    assert "marker" in capsys.readouterr().err


def test_docs_write_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "charts" / "meshray"
    shutil.copytree(CHART, chart)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{docs.START}\n{docs.END}\n")
    assert main(["docs", "--check", "--chart", str(chart)]) == 1
    assert main(["docs", "--chart", str(chart)]) == 0
    assert main(["docs", "--check", "--chart", str(chart)]) == 0
    text = readme.read_text()
    # every key of values.yaml with a description appears with it
    for key, desc in descriptions((chart / "values.yaml").read_text()).items():
        assert f"| `{key}` |" in text
        assert desc.replace("|", "\\|") in text


def test_generated_docs_have_no_drift(capsys: pytest.CaptureFixture[str]) -> None:
    """The chart README, docs/values.md and docs/cli.md are what `meshray docs` writes."""
    assert main(["docs", "--check"]) == 0, capsys.readouterr().out
    checked = {line.split(":")[0] for line in capsys.readouterr().out.splitlines()}
    assert {str(CHART / "README.md"), str(REPO / "docs" / "values.md"),
            str(REPO / "docs" / "cli.md")} <= checked


def test_docs_list_every_audit_check() -> None:
    """The generated checks table in docs/cli.md names exactly the audit's checks."""
    import re

    from meshray.audit import CHECKS

    text = (REPO / "docs" / "cli.md").read_text()
    block = text[text.index(docs.CHECKS_START):text.index(docs.CHECKS_END)]
    assert set(re.findall(r"^\| `([a-z0-9-]+)` \|", block, re.MULTILINE)) == set(CHECKS)


def values_rows(text: str) -> set[str]:
    import re

    return set(re.findall(r"^\| `([A-Za-z0-9.]+)` \|", text, re.MULTILINE))


def test_values_reference_has_every_described_key() -> None:
    described = descriptions((CHART / "values.yaml").read_text())
    for path in (REPO / "docs" / "values.md", CHART / "README.md"):
        assert set(described) <= values_rows(path.read_text()), path


def test_docs_check_catches_drift_in_every_target(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A checkout's README.md and docs/*.md with markers, and the chart README, all drift-checked;
    files without markers (hand-written docs) are left alone."""
    chart = tmp_path / "charts" / "meshray"
    shutil.copytree(CHART, chart)
    (tmp_path / "README.md").write_text("# no generated tables here\n")
    (tmp_path / "docs").mkdir()
    handwritten = tmp_path / "docs" / "notes.md"
    handwritten.write_text("# notes\n")
    checks = tmp_path / "docs" / "checks.md"
    checks.write_text(f"# checks\n{docs.CHECKS_START}\n{docs.CHECKS_END}\n")
    assert main(["docs", "--check", "--chart", str(chart)]) == 1
    assert f"{checks}: out of date" in capsys.readouterr().out
    assert main(["docs", "--chart", str(chart)]) == 0
    assert main(["docs", "--check", "--chart", str(chart)]) == 0
    assert "| `no-headless-service` | error |" in checks.read_text()
    assert handwritten.read_text() == "# notes\n"
    readme = chart / "README.md"
    readme.write_text(readme.read_text().replace("| `ports.gcs` |", "| `ports.gcss` |"))
    capsys.readouterr()
    assert main(["docs", "--check", "--chart", str(chart)]) == 1
    assert f"{readme}: out of date" in capsys.readouterr().out


def test_chart_readme_must_have_the_values_markers(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "meshray"
    shutil.copytree(CHART, chart)
    (chart / "README.md").write_text("# meshray\n")
    assert main(["docs", "--check", "--chart", str(chart)]) == 2
    assert "markers" in capsys.readouterr().err


def test_helm_show_readme_prints_the_values_table() -> None:
    """What `helm show readme` (and Artifact Hub) shows: the chart README with every value."""
    import subprocess

    from meshray.render import helm_executable

    res = subprocess.run([helm_executable(), "show", "readme", str(CHART)], capture_output=True,
                         text=True, timeout=60, check=True)
    assert "| Key | Type | Default | Description |" in res.stdout
    assert set(descriptions((CHART / "values.yaml").read_text())) <= values_rows(res.stdout)
