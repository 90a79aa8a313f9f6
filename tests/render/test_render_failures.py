"""Every problem the chart's validation can report (one define per rule family, in the
templates/*/_validate.tpl files beside what they check, all collected into the single `fail` of
templates/validate.yaml), triggered once: bad values never render a manifest, and the message
names the offending key and value. A values file with several mistakes gets every message in
one helm error."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, REPO, Renderer
from meshray.render import RenderError, RenderRequest, chart_refusals, render
from refusal_cases import CASES


@pytest.mark.parametrize(("set_values", "release", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_values_fail_with_key_and_value(set_values: tuple[str, ...], release: str,
                                            expected: tuple[str, ...]) -> None:
    strings = tuple(v.removeprefix("string:") for v in set_values if v.startswith("string:"))
    plain = tuple(v for v in set_values if not v.startswith("string:"))
    with pytest.raises(RenderError) as err:
        render(RenderRequest(set_values=plain, set_string_values=strings, release=release,
                             chart=CHART))
    for text in expected:
        assert text in err.value.message, (text, err.value.message)
    assert "execution error" not in err.value.message  # the helm noise is stripped


def template_texts() -> dict[str, str]:
    templates = CHART / "templates"
    return {str(p.relative_to(templates)): p.read_text()
            for p in sorted(templates.rglob("*")) if p.is_file()}


def rule_families() -> dict[str, str]:
    """Each rule family's define, by name: its text up to the next define of its file."""
    out: dict[str, str] = {}
    for text in template_texts().values():
        starts = list(re.finditer(r'\{\{- define "([^"]+)"', text))
        ends = [m.start() for m in starts[1:]] + [len(text)] if starts else []
        for m, end in zip(starts, ends, strict=True):
            if m.group(1).startswith("meshray.validate."):
                out[m.group(1).removeprefix("meshray.validate.")] = text[m.start():end]
    return out


def test_every_problem_in_the_chart_has_a_case() -> None:
    """Counting guard: each place a rule family adds a message needs a case above. A family
    that reads the live cluster (lookup) cannot fire under `helm template`, where lookup
    returns nothing: its messages are the cluster suite's (tests/cluster/)."""
    families = rule_families()
    assert len(families) > 10, sorted(families)
    sites = sum(body.count("$problems = append $problems") for body in families.values()
                if 'lookup "' not in body)
    total = sum(t.count("$problems = append $problems") for t in template_texts().values())
    live = sum(body.count("$problems = append $problems") for body in families.values()
               if 'lookup "' in body)
    assert sites + live == total, "a message site outside a rule family"
    # One message has a second case (node-ip-address, beside the pinned port flags), and one
    # case is the shared switched-off helper's (meshray.offSettings), outside any family.
    assert sites == len(CASES) - 2, f"{sites} messages in templates, {len(CASES)} cases"


def test_the_chart_fails_in_one_place() -> None:
    """Rule families return messages; only validate.yaml calls `fail`, once, with all of them."""
    calls = {name: len(re.findall(r"\{\{-?\s*fail\b", text))
             for name, text in template_texts().items()}
    assert {name: n for name, n in calls.items() if n} == {"validate.yaml": 1}


def test_every_rule_family_runs() -> None:
    """A family defined but missing from meshray.validate.families would never report."""
    texts = "".join(template_texts().values())
    defined = set(re.findall(r'define "meshray\.validate\.(\w+)"', texts)) - {"families"}
    listed = re.search(
        r'define "meshray\.validate\.families" -\}\}\s*\{\{- toJson \(list ([^)]*)\)', texts)
    assert listed, "meshray.validate.families not found"
    assert sorted(re.findall(r'"(\w+)"', listed.group(1))) == sorted(defined)


# Independent mistakes, each in a different rule family, and the message each one must produce.
SEVERAL_MISTAKES: dict[str, object] = {
    "ports": {"objectManager": 6380, "workerPortList": [12000, 12001, 12000]},
    "head": {"rayStartParams": {"node-ip-address": "10.0.0.1"}, "labels": {"ray.io/group": "x"}},
    "workerGroups": {"cpu": {"replicas": 5, "maxReplicas": 2,
                             "env": [{"name": "RAY_SERVE_ENABLE_HA_PROXY", "value": "true"}]}},
    "mtls": {"portLevelMtls": [{"port": 9999, "mode": "PERMISSIVE"}]},
    "ingress": {"dashboard": {"enabled": True}},
    "gateway": {"enabled": True},
}
SEVERAL_MESSAGES = [
    'clusterName: empty, so the release name "9lives" names the cluster: "9lives-meshray" is '
    'not a DNS-1035 label',
    "ports.workerPortList: port 12000 is listed twice",
    "ports.objectManager: port 6380 is already used by ports.nodeManager",
    'head.rayStartParams.node-ip-address: "10.0.0.1" overrides a port the chart pins',
    'head.labels.ray.io/group: "x": KubeRay (ray.io/) or the chart (meshray.io/) sets',
    "workerGroups.cpu.replicas: 5 is outside minReplicas..maxReplicas (1..2)",
    "mtls.portLevelMtls: port 9999 is not a port the Ray pods listen on",
    'ingress.dashboard.auth.type: "none": the dashboard and Jobs API execute arbitrary code',
    'workerGroups.cpu.env: RAY_SERVE_ENABLE_HA_PROXY="true" makes Ray Serve bind',
    "gateway.routes: gateway.enabled=true but no route is enabled",
]


def helm() -> str:
    return os.environ.get("MESHRAY_HELM") or str(REPO / "bin" / "helm")


def test_several_mistakes_are_all_reported_in_one_helm_error(tmp_path: Path) -> None:
    """Every problem at once: one `helm template` run names every mistake of the file, one
    message per line, in rule-family order, instead of stopping at the first."""
    values = tmp_path / "several.yaml"
    values.write_text(yaml.safe_dump(SEVERAL_MISTAKES))
    proc = subprocess.run([helm(), "template", "9lives", str(CHART), "-f", str(values)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.count("Error:") == 1 and proc.stderr.count("execution error") == 1
    with pytest.raises(RenderError) as err:
        render(RenderRequest(values_files=(values,), release="9lives", chart=CHART))
    lines = err.value.message.splitlines()
    assert len(lines) == len(SEVERAL_MESSAGES), lines
    for line, expected in zip(lines, SEVERAL_MESSAGES, strict=True):
        assert line.startswith(expected), (expected, line)
    # The block is made to be read by a program too: a fixed first line counting the problems,
    # then exactly that many "key: problem" lines, which the CLI takes as they are.
    header = (f"meshray refused these values ({len(SEVERAL_MESSAGES)} problem(s), one per line "
              "as key: problem):")
    block = proc.stderr.split(header + "\n", 1)
    assert len(block) == 2, proc.stderr
    raw = block[1].splitlines()[: len(SEVERAL_MESSAGES)]
    assert [ln.split(": ", 1)[0] for ln in raw] == [m.split(": ", 1)[0] for m in SEVERAL_MESSAGES]
    assert err.value.problems == [tuple(ln.split(": ", 1)) for ln in raw]


def test_a_refusal_block_whose_count_does_not_match_is_not_read_as_one() -> None:
    """The count is what makes the block safe to read: a truncated block is helm's text, not
    problems with keys."""
    header = "meshray refused these values (3 problem(s), one per line as key: problem):"
    assert chart_refusals(f"{header}\na.b: one\nc.d: two") is None
    assert chart_refusals(f"{header}\na.b: one\nc.d: two\ne: three") == [
        ("a.b", "one"), ("c.d", "two"), ("e", "three")]
    assert chart_refusals("a.b: one") is None


def test_no_message_holds_a_newline() -> None:
    """One problem per line is the block's contract: no message literal of a rule family may
    contain a newline escape (a message built from values is one line, as values are checked
    to be)."""
    checked = []
    for name, text in template_texts().items():
        for msg in re.findall(r'\$problems = append \$problems (.*?) -\}\}', text):
            assert "\\n" not in msg, (name, msg)
            checked.append(msg)
    assert any("clusterDomain" in m for m in checked), "the message pattern no longer matches"


def test_a_repeated_duplicate_is_reported_once() -> None:
    """Collecting every message must not repeat one: a port listed three times is one problem."""
    with pytest.raises(RenderError) as err:
        render(RenderRequest(set_values=("ports.workerPortList={12000,12000,12000,12001,12001}",),
                             chart=CHART))
    assert err.value.message.splitlines() == [
        "ports.workerPortList: port 12000 is listed twice",
        "ports.workerPortList: port 12001 is listed twice",
    ]


def test_ray_tls_listener_ceiling_is_a_sidecar_cost(render_chart: Renderer) -> None:
    """rayTls.maxListeners counts listeners in Ray sidecars; with the ambient dataplane there are
    none, so the same cluster renders (and with sidecars it is refused, as in CASES)."""
    big = ("rayTls.enabled=true", "workerDefaults.maxReplicas=40")
    with pytest.raises(RenderError, match=r"rayTls\.maxListeners"):
        render(RenderRequest(set_values=big, chart=CHART))
    docs = render_chart(set_values=(*big, "mesh.dataplane=ambient"))
    assert not [d for d in docs if d["kind"] == "Sidecar"]


def test_good_values_still_render(render_chart: Renderer) -> None:
    """The cases above differ from a valid render only in the offending value."""
    docs = render_chart(set_values=("workerGroups.cpu.replicas=2", "workerGroups.cpu.maxReplicas=2",
                                    "ingress.dashboard.enabled=true",
                                    "ingress.dashboard.auth.type=external",
                                    "ingress.dashboard.auth.externalUrl=http://oauth2/auth"))
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["AuthorizationPolicy", "Ingress", "PeerAuthentication", "RayCluster",
                     "Service", "ServiceAccount", "Sidecar", "Sidecar"]
