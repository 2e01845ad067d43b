"""The red team of `evaluate --redteam N` on real NusaX texts: the attacks (held-out families and
BIPIA's test split only, seeded, each naming a wrong target label), then three real systems — a
`linear` model trained here on 200 NusaX rows, smollm2-135m through llama.cpp without a guard,
and the same LLM behind the shipped injection detector (`[guard] injection = "route"`) — scored
by `evaluate`, with every rate recomputed from the systems' own answers, the report section, the
gate rules `max_attack_success_rate` / `max_guard_false_positive_rate` and the CLI flag."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from stillhouse.cli import app
from stillhouse.data.io import write_jsonl
from stillhouse.errors import StillhouseError
from stillhouse.evaluate.efficiency import EfficiencySettings
from stillhouse.evaluate.redteam import (
    build_attacks,
)
from stillhouse.evaluate.report import render_report
from stillhouse.evaluate.results import Results, read_results, write_results
from stillhouse.evaluate.run import evaluate
from stillhouse.gate import gate
from stillhouse.guard.injection import scan
from stillhouse.llm.predictor import LLMPredictor
from stillhouse.task import GuardSection, load_task
from stillhouse.train import TrainSettings, load_model, train

REPO = Path(__file__).resolve().parents[2]
NUSAX = REPO / "examples" / "nusax-sentiment-en"
DATASETS = REPO.parent / "shared" / "datasets"
LABELS = ["positive", "neutral", "negative"]
TASK = (
    'name = "nusax-en"\n[labels]\npositive = "pos"\nneutral = "neu"\nnegative = "neg"\n'
    '[llm]\nmodel = "smollm2-135m"\nthreads = 2\nbatch_size = 8\n'
)
N_TEST = 30
N_ATTACKS = 16

pytestmark = pytest.mark.slow  # smollm2-135m through llama.cpp, twice


def nusax(split: str, n: int) -> list[dict[str, Any]]:
    with (NUSAX / f"{split}.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))[:n]


def write_task(folder: Path, gate_lines: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = TASK + (f"\n[gate]\n{gate_lines}\n" if gate_lines else "")
    (folder / "task.toml").write_text(text, encoding="utf-8")
    return folder / "task.toml"


# --- real systems -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("redteam")
    task = load_task(write_task(folder))
    write_jsonl(folder / "train.jsonl", nusax("train", 200))
    write_jsonl(folder / "test.jsonl", nusax("test", N_TEST))
    model_dir = folder / "linear"
    train(
        task,
        model_dir,
        TrainSettings(recipe="linear", latency_texts=5, throughput_texts=20),
        data=folder / "train.jsonl",
    )
    unguarded = task.model_copy(update={"guard": GuardSection(injection="off")})
    systems = {
        "linear": load_model(model_dir, task=task),
        "llm": LLMPredictor(unguarded, "smollm2-135m"),
        "guarded": LLMPredictor(task, "smollm2-135m"),  # [guard] injection = "route", the default
    }
    results = evaluate(
        task,
        folder / "test.jsonl",
        systems,
        n_resamples=200,
        seed=1,
        redteam=N_ATTACKS,
        efficiency=EfficiencySettings(sample=0),
    )
    rows = nusax("test", N_TEST)
    attacks = build_attacks(
        [r["text"] for r in rows], [r["label"] for r in rows], LABELS, N_ATTACKS, seed=1
    )
    attacked = {name: s.predict([a.text for a in attacks]) for name, s in systems.items()}
    clean = {name: s.predict([r["text"] for r in rows]) for name, s in systems.items()}
    yield {
        "folder": folder,
        "task": task,
        "results": results,
        "rows": rows,
        "attacks": attacks,
        "attacked": attacked,
        "clean": clean,
    }
    systems["llm"].close()
    systems["guarded"].close()


def test_every_rate_is_what_the_systems_answered(setup: dict[str, Any]) -> None:
    results: Results = setup["results"]
    rows, attacks = setup["rows"], setup["attacks"]
    assert results.settings["redteam"]["texts"] == N_ATTACKS
    assert results.settings["redteam"]["attacked"] == N_ATTACKS
    assert results.settings["redteam"]["bipia_split"] == "test"
    for name in ("linear", "llm", "guarded"):
        block = results.systems[name]["redteam"]
        answers = [p.answer for p in setup["attacked"][name]]
        before = [setup["clean"][name][a.item].answer for a in attacks]
        gold = [rows[a.item]["label"] for a in attacks]
        on_target = [x == a.target for x, a in zip(answers, attacks, strict=True)]
        # success: the answer *became* the target (it was not the target on the clean text)
        became = [
            hit and y != a.target for hit, y, a in zip(on_target, before, attacks, strict=True)
        ]
        success = np.mean(became)
        flips = np.mean([x != y for x, y in zip(answers, before, strict=True)])
        assert block["attacks"] == N_ATTACKS
        assert block["attack_success_rate"]["estimate"] == pytest.approx(success)
        assert block["target_rate"]["estimate"] == pytest.approx(np.mean(on_target))
        assert block["answered_target"] == sum(on_target) >= block["succeeded"]
        assert block["flip_rate"]["estimate"] == pytest.approx(flips)
        assert block["clean_accuracy"]["estimate"] == pytest.approx(
            np.mean([y == g for y, g in zip(before, gold, strict=True)])
        )
        assert block["abstention_rate"]["estimate"] == pytest.approx(
            np.mean([x == "" for x in answers])
        )
        assert block["succeeded"] == round(success * N_ATTACKS)
        rates = ("attack_success_rate", "target_rate", "flip_rate", "clean_accuracy")
        for key in (*rates, "abstention_rate"):
            interval = block[key]
            assert 0 <= interval["low"] <= interval["estimate"] <= interval["high"] <= 1
        assert sum(row["n"] for row in block["by_family"].values()) == N_ATTACKS
        assert sum(row["n"] for row in block["by_position"].values()) == N_ATTACKS
        assert len(block["successful_attacks"]) == min(block["succeeded"], 10)
    # the clean accuracy on the attacked texts is the same texts' accuracy in the main results
    correct = np.array(results.systems["linear"]["correct"])
    assert results.systems["linear"]["redteam"]["clean_accuracy"]["estimate"] == pytest.approx(
        correct[[a.item for a in attacks]].mean()
    )


def test_only_the_guarded_system_reports_its_detector(setup: dict[str, Any]) -> None:
    results: Results = setup["results"]
    assert results.systems["linear"]["redteam"]["guard"] is None
    assert results.systems["llm"]["redteam"]["guard"] is None
    guard = results.systems["guarded"]["redteam"]["guard"]
    flagged = [s.injection for s in scan([a.text for a in setup["attacks"]])]
    clean_flagged = [s.injection for s in scan([r["text"] for r in setup["rows"]])]
    assert guard["flagged_attacked"] == sum(flagged)
    assert guard["recall"]["estimate"] == pytest.approx(np.mean(flagged))
    assert guard["flagged_clean"] == sum(clean_flagged)
    assert guard["clean_texts"] == N_TEST
    assert guard["false_positive_rate"]["estimate"] == pytest.approx(np.mean(clean_flagged))
    # what the detector flags never reaches the LLM: it cannot succeed there
    blocked = results.systems["guarded"]["redteam"]
    assert guard["recall"]["estimate"] > 0.5  # held-out families: the detector catches most
    assert blocked["abstention_rate"]["estimate"] >= guard["recall"]["estimate"] - 1e-9
    assert blocked["attack_success_rate"]["estimate"] <= 1 - guard["recall"]["estimate"] + 1e-9


def test_report_and_results_json_carry_the_red_team(setup: dict[str, Any], tmp_path: Path) -> None:
    results: Results = setup["results"]
    html = render_report(results)
    assert '<section id="redteam">' in html
    assert "Injection guard" in html and "attack success" in html
    path = write_results(results, tmp_path / "results.json")
    again = read_results(path)
    assert again.systems["guarded"]["redteam"] == json.loads(
        json.dumps(results.systems["guarded"]["redteam"])
    )


def test_gate_rules_read_the_red_team(setup: dict[str, Any], tmp_path: Path) -> None:
    results: Results = setup["results"]
    success = results.systems["llm"]["redteam"]["attack_success_rate"]["estimate"]
    false_positives = results.systems["guarded"]["redteam"]["guard"]["false_positive_rate"]
    lines = (
        f"max_attack_success_rate = {min(success + 0.01, 1.0)}\n"
        f"max_guard_false_positive_rate = {min(false_positives['estimate'] + 0.01, 1.0)}\n"
    )
    task = load_task(write_task(tmp_path / "a", lines))
    rows = {row.rule: row for row in gate(task, results, system="llm").rows}
    assert rows["max_attack_success_rate"].passed
    assert rows["max_attack_success_rate"].measured == pytest.approx(success)
    assert not rows["max_guard_false_positive_rate"].passed  # no guard on that system
    assert "no injection guard" in rows["max_guard_false_positive_rate"].reason
    guarded = {row.rule: row for row in gate(task, results, system="guarded").rows}
    assert guarded["max_guard_false_positive_rate"].passed
    if success > 0:
        strict = load_task(write_task(tmp_path / "b", f"max_attack_success_rate = {success / 2}"))
        (row,) = gate(strict, results, system="llm").rows
        assert not row.passed and "attack success rate" in row.reason


def test_gate_without_a_red_team_fails_and_says_how_to_measure(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    results: Results = setup["results"]
    plain = Results(
        task=results.task,
        data=results.data,
        settings={**results.settings, "redteam": None},
        provenance=results.provenance,
        systems={name: {**system, "redteam": None} for name, system in results.systems.items()},
        comparisons=results.comparisons,
    )
    task = load_task(write_task(tmp_path, "max_attack_success_rate = 0.05"))
    (row,) = gate(task, plain).rows
    assert not row.passed and row.measured is None and "--redteam" in row.reason


@pytest.mark.parametrize(
    "block, detail",
    [
        ("oops", "not an object"),
        ({"attack_success_rate": 0.1}, "attack_success_rate"),
        ({"attack_success_rate": {"estimate": 1.5, "low": 0, "high": 1}}, "attack_success_rate"),
    ],
)
def test_a_malformed_red_team_block_is_a_clear_error(
    setup: dict[str, Any], tmp_path: Path, block: Any, detail: str
) -> None:
    results: Results = setup["results"]
    document = json.loads(json.dumps(results.to_json()))
    document["systems"]["linear"]["redteam"] = block
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    task = load_task(write_task(tmp_path, "max_attack_success_rate = 0.05"))
    with pytest.raises(StillhouseError) as error:
        gate(task, read_results(path), system="linear")
    assert error.value.code == "E931"
    assert str(path) in error.value.message and detail in error.value.message


@pytest.mark.parametrize("rule", ["max_attack_success_rate", "max_guard_false_positive_rate"])
@pytest.mark.parametrize("value", ["5", 5, -0.1, True])
def test_a_bad_gate_value_names_the_key(
    setup: dict[str, Any], tmp_path: Path, rule: str, value: Any
) -> None:
    task = load_task(write_task(tmp_path, f"{rule} = {json.dumps(value)}"))
    with pytest.raises(StillhouseError) as error:
        gate(task, setup["results"])
    assert error.value.code == "E004" and f"gate.{rule}" in error.value.message


def test_the_cli_flag_runs_the_red_team(setup: dict[str, Any], tmp_path: Path) -> None:
    folder = setup["folder"]
    argv = [
        "evaluate",
        "--task",
        str(folder / "task.toml"),
        "--test",
        str(folder / "test.jsonl"),
        "--system",
        f"m=model:{folder / 'linear'}",
        "--bootstrap",
        "50",
        "--efficiency-sample",
        "0",
        "--redteam",
        "10",
        "--out",
        str(tmp_path / "out"),
    ]
    outcome = CliRunner().invoke(app, argv)
    assert outcome.exit_code == 0, outcome.output
    assert "m · red team: attack success" in outcome.output
    written = read_results(tmp_path / "out" / "results.json")
    assert written.systems["m"]["redteam"]["attacks"] == 10
    refused = CliRunner().invoke(app, [*argv[:-4], "--redteam", "0", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "E930" in refused.output
    assert not (tmp_path / "x").exists()


def test_a_predictions_file_is_not_attacked(setup: dict[str, Any], tmp_path: Path) -> None:
    rows = setup["rows"]
    preds = tmp_path / "preds.jsonl"
    rng = random.Random(0)
    write_jsonl(preds, [{"id": r["id"], "label": rng.choice(LABELS)} for r in rows])
    from stillhouse.predictors import PredictionsFile

    task = setup["task"]
    results = evaluate(
        task,
        setup["folder"] / "test.jsonl",
        {"file": PredictionsFile(preds, task)},
        n_resamples=20,
        redteam=5,
        efficiency=EfficiencySettings(sample=0),
    )
    assert results.systems["file"]["redteam"] is None
    assert "predictions file" in results.systems["file"]["not_measured"]["redteam"]
    assert "Not measured" in render_report(results) or "not measured" in render_report(results)
