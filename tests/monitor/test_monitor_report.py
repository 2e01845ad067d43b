"""monitor.json as gate reads it (a malformed one is one clear error), and when alarms fire."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stillhouse.errors import StillhouseError
from stillhouse.monitor.report import read_monitor
from stillhouse.monitor.run import _alarms


def shift(psi: float, p: float) -> dict[str, Any]:
    level = "major" if psi >= 0.25 else "moderate" if psi >= 0.1 else "none"
    return {
        "psi": psi,
        "level": level,
        "expected_without_shift": 0.2,
        "chi_square": {"statistic": 1.0, "dof": 76, "p_value": p},
        "top": [{"label": "a", "baseline_share": 0.1, "window_share": 0.2, "psi_term": 0.05}],
    }


def document(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "label_shift": None,
        "confidence_shift": None,
        "estimated_accuracy": None,
        "baseline": None,
        "abstention": {"rate": {"estimate": 0.0, "low": 0.0, "high": 0.01}, "baseline_rate": None},
        "text": None,
    }
    return base | sections


def test_a_label_psi_from_sampling_noise_alone_raises_no_alarm() -> None:
    """77 labels, 500 answers: PSI 0.2 is what noise gives; chi-square p 0.4 says so."""
    assert _alarms(document(label_shift=shift(0.2, 0.4))) == []
    fired = _alarms(document(label_shift=shift(0.2, 1e-5)))
    assert [a["what"] for a in fired] == ["label_shift"]
    assert "PSI 0.200 (moderate" in fired[0]["sentence"] and "< 0.001" in fired[0]["sentence"]


def test_estimated_accuracy_alarms_only_when_its_interval_is_below_the_baseline() -> None:
    estimate = {"estimate": 0.85, "low": 0.82, "high": 0.88}
    below = document(estimated_accuracy=estimate, baseline={"estimated_accuracy": 0.9})
    within = document(estimated_accuracy=estimate, baseline={"estimated_accuracy": 0.87})
    assert [a["what"] for a in _alarms(below)] == ["estimated_accuracy"]
    assert _alarms(within) == []


def test_abstention_alarms_when_its_interval_is_above_the_baseline_rate() -> None:
    rate = {"estimate": 0.12, "low": 0.09, "high": 0.15}
    assert _alarms(document(abstention={"rate": rate, "baseline_rate": 0.05}))[0]["what"] == (
        "abstention"
    )
    assert _alarms(document(abstention={"rate": rate, "baseline_rate": 0.1})) == []


def write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        ("not json at all", "E843", "not valid JSON"),
        ([1, 2], "E843", '"schema": "stillhouse.monitor"'),
        ({"schema": "stillhouse.results"}, "E843", '"schema"'),
        ({"schema": "stillhouse.monitor", "schema_version": 2}, "E844", "version 2"),
        ({"schema": "stillhouse.monitor", "schema_version": 1}, "E843", "`task` is missing"),
    ],
)
def test_a_malformed_monitor_file_is_refused_naming_it(
    tmp_path: Path, content: Any, code: str, words: str
) -> None:
    path = write(tmp_path / "monitor.json", content)
    with pytest.raises(StillhouseError) as caught:
        read_monitor(path)
    assert caught.value.code == code and str(path) in caught.value.message
    assert words in caught.value.message


def test_a_missing_monitor_file_or_a_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(StillhouseError) as caught:
        read_monitor(tmp_path / "nowhere.json")
    assert caught.value.code == "E841"
    with pytest.raises(StillhouseError) as caught:
        read_monitor(tmp_path)
    assert caught.value.code == "E842" and "folder" in caught.value.message
