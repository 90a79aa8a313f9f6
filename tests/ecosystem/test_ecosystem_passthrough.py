"""The pod-spec passthrough's values schema comes from Kubernetes' own definitions
(tools/ecosystem/passthrough_schema.py over the schemas `make lint-schemas` extracts from each
supported version's OpenAPI spec): the committed block is what the generator makes, a field
Kubernetes adds or drops changes it, and the overlay cannot name a field Kubernetes lacks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from ecosystem_support import CHART, load_script, schemas_dir

# Needs the ecosystem tools `make lint-setup` installs; `make check` leaves it out.
pytestmark = pytest.mark.ecosystem

YAMALE = CHART / "values.schema.yamale"


@pytest.fixture(scope="module")
def gen() -> Any:
    return load_script("passthrough_schema")


def k8s_copy(tmp_path: Path) -> Path:
    """The k8s-* pod definitions only, copied so a test may edit them."""
    out = tmp_path / "schemas"
    for pod in schemas_dir().glob("k8s-*/v1/pod_v1.json"):
        dest = out / pod.relative_to(schemas_dir())
        dest.parent.mkdir(parents=True)
        shutil.copy(pod, dest)
    return out


def edit(schemas: Path, version: str, fn: Any) -> None:
    path = next(schemas.glob(f"k8s-{version}*/v1/pod_v1.json"))
    data = json.loads(path.read_text())
    fn(data["$defs"])
    path.write_text(json.dumps(data))


def generated(gen: Any, schemas: Path) -> dict[str, Any]:
    block = gen.render(gen.load_definitions(schemas))
    return {k: v for k, v in yaml.safe_load(block).items()}


def test_the_committed_block_is_what_kubernetes_definitions_give(gen: Any) -> None:
    assert gen.main(["--schemas", str(schemas_dir()), "--check", str(YAMALE)]) == 0


def test_fields_are_the_union_of_the_supported_versions(gen: Any) -> None:
    """A field only newer Kubernetes has is accepted (not refused on a new cluster)."""
    versions = sorted(p.parts[-3] for p in schemas_dir().glob("k8s-*/v1/pod_v1.json"))
    assert len(versions) >= 2, versions
    block = generated(gen, schemas_dir())
    oldest = json.loads((schemas_dir() / versions[0] / "v1" / "pod_v1.json").read_text())
    newest = json.loads((schemas_dir() / versions[-1] / "v1" / "pod_v1.json").read_text())
    for name, include in gen.TYPES.items():
        union = set(oldest["$defs"][gen.CORE + name]["properties"]) | set(
            newest["$defs"][gen.CORE + name]["properties"]
        )
        assert set(block[include]) == union, name


def test_a_field_kubernetes_adds_appears_and_one_it_drops_goes(gen: Any, tmp_path: Path) -> None:
    schemas = k8s_copy(tmp_path)

    def change(defs: dict[str, Any]) -> None:
        defs[gen.CORE + "Toleration"]["properties"]["newField"] = {"type": "integer"}

    for version in ("v1.29", "v1.36"):
        edit(schemas, version, change)
        edit(schemas, version, lambda d: d[gen.CORE + "EnvFromSource"]["properties"].pop("prefix"))
    block = generated(gen, schemas)
    assert block["k8sToleration"]["newField"] == "int(required=False)"
    assert "prefix" not in block["k8sEnvFromSource"]
    assert gen.main(["--schemas", str(schemas), "--check", str(YAMALE)]) == 1


def test_required_only_where_every_version_requires_it(gen: Any, tmp_path: Path) -> None:
    schemas = k8s_copy(tmp_path)
    edit(schemas, "v1.29", lambda d: d[gen.CORE + "Capabilities"].__setitem__("required", ["add"]))
    assert generated(gen, schemas)["k8sCapabilities"]["add"] == "list(str(), required=False)"
    edit(schemas, "v1.36", lambda d: d[gen.CORE + "Capabilities"].__setitem__("required", ["add"]))
    assert generated(gen, schemas)["k8sCapabilities"]["add"] == "list(str())"


def test_the_overlay_cannot_name_a_field_kubernetes_lacks(gen: Any, tmp_path: Path) -> None:
    schemas = k8s_copy(tmp_path)
    for version in ("v1.29", "v1.36"):
        edit(
            schemas,
            version,
            lambda d: d[gen.CORE + "VolumeMount"]["properties"].pop("mountPropagation"),
        )
    with pytest.raises(SystemExit, match="mountPropagation"):
        gen.render(gen.load_definitions(schemas))
