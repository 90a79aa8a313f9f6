"""The local control plane's port picker (tools/controlplane/controlplane.py): every listener of
every process the cluster suites start gets its own loopback port. CI once failed because the
KubeRay operator got one port for both its metrics and health-probe listeners."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "controlplane"))

from controlplane import ControlPlaneError, PortPicker, _ephemeral_range  # noqa: E402

PICKS = 3000


def _first_repeat(pick: Callable[[], int], n: int = PICKS) -> int | None:
    seen: set[int] = set()
    for _ in range(n):
        port = pick()
        if port in seen:
            return port
        seen.add(port)
    return None


def _bind_zero() -> int:
    """The picker this module replaces: ask the kernel, close, hand the number on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_kernel_bind_zero_repeats_ports() -> None:
    """Negative control for the check below: bind(0)-then-close hands out the same port again
    well within a control plane's lifetime of picks."""
    assert _first_repeat(_bind_zero) is not None


def test_picker_never_repeats_a_port() -> None:
    assert _first_repeat(PortPicker()) is None


def test_picker_stays_out_of_the_ephemeral_range() -> None:
    eph = _ephemeral_range()
    pick = PortPicker()
    ports = [pick() for _ in range(200)]
    assert not [p for p in ports if p in eph]
    assert all(1024 < p < 65536 for p in ports)


def test_picker_skips_a_busy_port_and_says_when_none_is_left() -> None:
    pick = PortPicker()
    busy_port, free = pick(), pick()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", busy_port))
        busy.listen()
        other = PortPicker(pool=[busy_port, free])
        assert other() == free
        with pytest.raises(ControlPlaneError, match="no free loopback port left among 2"):
            other()


def test_xdist_workers_pick_from_disjoint_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make cluster-e2e` runs one pytest-xdist worker per operator version, each starting its
    own control plane with its own picker in its own process."""
    pools = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
        pools.append(set(PortPicker().pool))
    assert pools[0] and pools[1]
    assert not pools[0] & pools[1]
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    assert set(PortPicker().pool) == pools[0] | pools[1]
