"""--engine/--ray-address/--autoscale are checked before anything starts (no Ray needed)."""

from __future__ import annotations

import sys

import pytest

from stillhouse.errors import StillhouseError
from stillhouse.scale.engine import Engine, check_address, make_engine
from stillhouse.scale.serve import Replicas, choose_replicas, parse_autoscale


@pytest.mark.parametrize(
    "address", ["auto", "ray://head.example:10001", "10.0.0.5:6379", "[::1]:6379", "localhost:1"]
)
def test_ray_addresses_that_are_accepted(address: str) -> None:
    assert check_address(address) == address


@pytest.mark.parametrize(
    "address", ["", "head", "ray://head", "head:0", "head:70000", "http://h:1"]
)
def test_ray_addresses_that_are_refused(address: str) -> None:
    with pytest.raises(StillhouseError) as raised:
        check_address(address)
    assert raised.value.code == "E950"


def test_local_engine_refuses_ray_options_and_is_the_default() -> None:
    assert make_engine("local") == Engine()
    for kwargs, option in (
        ({"address": "auto"}, "--ray-address"),
        ({"workers": 2}, "--ray-workers"),
    ):
        with pytest.raises(StillhouseError, match=option) as raised:
            make_engine("local", **kwargs)
        assert raised.value.code == "E954"


def test_ray_engine_without_ray_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray looks like
    with pytest.raises(StillhouseError, match=r"stillhouse\[scale\]") as raised:
        make_engine("ray")
    assert raised.value.code == "E951"


def test_ray_engine_keeps_address_workers_and_threads() -> None:
    pytest.importorskip("ray")
    assert make_engine("ray", "auto", 3, 2) == Engine("ray", "auto", 3, 2)
    assert make_engine("ray").threads == 1


def test_replicas_and_autoscaling() -> None:
    assert choose_replicas(None, None) == Replicas(1)
    assert choose_replicas(3, None).options() == {"num_replicas": 3}
    scaled = parse_autoscale("1-4").options()["autoscaling_config"]
    assert (scaled["min_replicas"], scaled["max_replicas"]) == (1, 4)
    for bad in ("4-1", "0-0", "1-", "a-b", "2"):
        with pytest.raises(StillhouseError) as raised:
            parse_autoscale(bad)
        assert raised.value.code == "E953"
    with pytest.raises(StillhouseError) as raised:
        choose_replicas(2, "1-3")
    assert raised.value.code == "E956"
