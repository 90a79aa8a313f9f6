"""`meshray docs`: the values reference table, its README markers, and drift."""

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


def test_readme_has_no_drift(capsys: pytest.CaptureFixture[str]) -> None:
    assert (REPO / "README.md").is_file(), "README.md missing"
    assert main(["docs", "--check"]) == 0, capsys.readouterr().out


def test_readme_lists_every_audit_check() -> None:
    """The generated checks table in the README names exactly the audit's checks."""
    import re

    from meshray.audit import CHECKS

    text = (REPO / "README.md").read_text()
    block = text[text.index(docs.CHECKS_START):text.index(docs.CHECKS_END)]
    assert set(re.findall(r"^\| `([a-z0-9-]+)` \|", block, re.MULTILINE)) == set(CHECKS)
