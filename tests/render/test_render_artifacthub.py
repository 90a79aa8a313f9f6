"""Chart.yaml's Artifact Hub annotations parse as Artifact Hub reads them: what `helm show chart`
and Artifact Hub display for the chart (images, links, license, changes)."""

from __future__ import annotations

import re
from typing import Any

import yaml
from chart_support import CHART

# https://artifacthub.io/docs/topics/annotations/helm
CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}


def annotations() -> dict[str, str]:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    out = meta["annotations"]
    assert all(isinstance(v, str) for v in out.values()), "Helm annotations are strings"
    return out


def listed(key: str) -> list[dict[str, Any]]:
    value = yaml.safe_load(annotations()[key])
    assert isinstance(value, list) and value, key
    return value


def test_changes_are_structured_entries() -> None:
    for change in listed("artifacthub.io/changes"):
        assert set(change) <= {"kind", "description", "links"}, change
        assert change["kind"] in CHANGE_KINDS, change
        assert isinstance(change["description"], str) and change["description"].strip()
        for link in change.get("links", []):
            assert link["name"] and link["url"].startswith("https://"), link


def test_images_are_the_default_ray_image() -> None:
    """The image list is what Artifact Hub scans: the Ray image at the chart's default version."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    images = listed("artifacthub.io/images")
    assert all(set(i) <= {"name", "image", "platforms", "whitelisted"} for i in images), images
    expected = f"{values['ray']['image']['repository']}:{values['ray']['version']}"
    assert [i["image"] for i in images] == [expected]


def test_links_and_license() -> None:
    for link in listed("artifacthub.io/links"):
        assert set(link) == {"name", "url"} and link["url"].startswith("https://"), link
    assert re.fullmatch(r"[A-Za-z0-9.+-]+", annotations()["artifacthub.io/license"])
