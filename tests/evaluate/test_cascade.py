"""Cascades end to end on 30 real NusaX texts: a linear model trained here on 200 NusaX rows,
then smollm2-135m with label scoring. Routing (texts above the threshold never reach the LLM),
shares, abstention and how evaluate scores it (checked against scikit-learn), the LLM's token
counts, and `evaluate --system NAME=cascade:...` from the CLI, bad specs included."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from stillhouse.cascade import Cascade, Stage, parse_cascade, stage_shares
from stillhouse.data.io import write_jsonl
from stillhouse.data.records import text_id
from stillhouse.errors import StillhouseError
from stillhouse.evaluate.efficiency import EfficiencySettings, measure_efficiency
from stillhouse.evaluate.run import evaluate
from stillhouse.llm.answer import answer
from stillhouse.llm.predictor import LLMPredictor
from stillhouse.llm.prompts import build_prompt
from stillhouse.predictors import PredictionsFile, open_systems
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, load_model, train

pytestmark = pytest.mark.slow

NUSAX = Path(__file__).resolve().parents[2] / "examples" / "nusax-sentiment-en"
NUSAX_TASK = 'name = "nusax-en"\n[labels]\npositive = "pos"\nneutral = "neu"\nnegative = "neg"\n'
TASK = NUSAX_TASK + '[llm]\nmodel = "smollm2-135m"\nthreads = 2\nbatch_size = 8\n'
# routing by confidence alone: the injection detector flags 1 of these 30 clean texts, which
# [guard]'s default (route) would keep from the LLM (tests/guard/test_screen_wiring.py)
TASK += '[guard]\ninjection = "off"\n'
N_TEST = 30


def nusax(split: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` rows of NusaX English ``split``: ``{"id", "text", "label"}``."""
    with (NUSAX / f"{split}.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))[:n]


def write_task(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.toml").write_text(text, encoding="utf-8")
    return folder / "task.toml"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("cascade")
    task = load_task(write_task(folder, TASK))
    write_jsonl(folder / "train.jsonl", nusax("train", 200))
    rows = nusax("test", N_TEST)
    write_jsonl(folder / "test.jsonl", rows)
    model_dir = folder / "models" / "linear"
    settings = TrainSettings(recipe="linear", latency_texts=10, throughput_texts=50)
    train(task, model_dir, settings, data=folder / "train.jsonl")
    linear = load_model(model_dir, task=task)
    llm = LLMPredictor(task, "smollm2-135m")
    texts = [row["text"] for row in rows]
    alone = {"linear": linear.predict(texts), "llm": llm.predict(texts)}
    yield {
        "folder": folder,
        "task": task,
        "rows": rows,
        "texts": texts,
        "model_dir": model_dir,
        "linear": linear,
        "llm": llm,
        "alone": alone,
    }
    llm.close()


def top(prediction) -> float:
    return max(prediction.probs.values())


def median_threshold(values: list[float]) -> float:
    """A threshold that splits ``values``: some are at or above it, some below."""
    ordered = sorted(values)
    threshold = ordered[len(ordered) // 2]
    assert ordered[0] < threshold <= ordered[-1], "all confidences equal: no split possible"
    return threshold


def routing_threshold(setup) -> float:
    return median_threshold([top(p) for p in setup["alone"]["linear"]])


def abstain_threshold(setup, threshold: float) -> float:
    """The median LLM confidence over the texts the linear model passes on."""
    linear, llm = setup["alone"]["linear"], setup["alone"]["llm"]
    routed = [top(b) for a, b in zip(linear, llm, strict=True) if top(a) < threshold]
    return median_threshold(routed)


def test_texts_above_the_threshold_never_reach_the_llm(setup) -> None:
    threshold = routing_threshold(setup)
    cascade = Cascade(
        [Stage("linear", setup["linear"], threshold), Stage("llm", setup["llm"], None)]
    )
    predictions = cascade.predict(setup["texts"])
    linear, llm = setup["alone"]["linear"], setup["alone"]["llm"]
    by_linear = 0
    for got, first, second in zip(predictions, linear, llm, strict=True):
        assert got.info["abstained"] is False
        if top(first) >= threshold:
            by_linear += 1
            assert got.info["stage"] == "linear" and got.info["stages_tried"] == 1
            assert got.answer == first.answer and got.probs == first.probs
            assert got.info["tokens_in"] == 0 and got.info["tokens_decoded"] == 0  # no LLM
            assert got.latency_ms == got.info["stage_latencies_ms"][0] > 0
        else:
            assert got.info["stage"] == "llm" and got.info["stages_tried"] == 2
            assert got.answer == second.answer
            np.testing.assert_allclose(
                [got.probs[k] for k in first.probs], [second.probs[k] for k in first.probs]
            )
            assert got.info["tokens_in"] == got.info["stage_info"]["tokens_in"] > 0
            spent = got.info["stage_latencies_ms"]  # the text's time in both stages
            assert len(spent) == 2 and min(spent) > 0
            assert got.latency_ms == pytest.approx(sum(spent))
        assert got.info["confidence"] == pytest.approx(top(got))
    assert 0 < by_linear < N_TEST
    described = cascade.describe()
    assert described["type"] == "cascade"
    assert [s["name"] for s in described["stages"]] == ["linear", "llm"]
    assert described["stages"][0]["threshold"] == threshold
    assert described["answered_by"] == {
        "linear": by_linear / N_TEST,
        "llm": (N_TEST - by_linear) / N_TEST,
    }
    assert described["abstained"] == 0.0
    shares = stage_shares(predictions, cascade)
    assert [s["answered"] for s in shares["stages"]] == [by_linear, N_TEST - by_linear]
    assert shares["abstained"] == 0 and shares["abstain_below"] is None


def abstaining_cascade(setup) -> tuple[Cascade, float, float]:
    threshold = routing_threshold(setup)
    abstain = abstain_threshold(setup, threshold)
    stages = [Stage("linear", setup["linear"], threshold), Stage("llm", setup["llm"], abstain)]
    return Cascade(stages, name="fast"), threshold, abstain


def test_the_last_stage_abstains_below_its_threshold_and_evaluate_counts_it(setup) -> None:
    cascade, threshold, abstain = abstaining_cascade(setup)
    linear, llm = setup["alone"]["linear"], setup["alone"]["llm"]
    expected_abstained = [
        top(a) < threshold and top(b) < abstain for a, b in zip(linear, llm, strict=True)
    ]
    assert any(expected_abstained)

    results = evaluate(
        setup["task"],
        setup["folder"] / "test.jsonl",
        {"fast": cascade, "linear": setup["linear"]},
        n_resamples=200,
        efficiency=EfficiencySettings(sample=0),
    )
    fast = results.systems["fast"]
    predictions = cascade.predict(setup["texts"])
    abstained = [p.info["abstained"] for p in predictions]
    assert abstained == expected_abstained
    for prediction, second in zip(predictions, llm, strict=True):
        if prediction.info["abstained"]:
            assert prediction.answer == "" and prediction.info["stage"] == "llm"
            assert prediction.info["top_answer"] == second.answer
            assert prediction.probs == second.probs  # kept for review priority

    # accuracy family: an abstention is an error (scikit-learn on the task's labels only)
    gold = [row["label"] for row in setup["rows"]]
    answers = [p.answer for p in predictions]
    labels = setup["task"].label_names
    right = [a == g for a, g in zip(answers, gold, strict=True)]
    n_abstained = sum(abstained)
    assert fast["correct"] == [int(r) for r in right]
    assert fast["metrics"]["accuracy"]["estimate"] == pytest.approx(np.mean(right))
    for average in ("macro", "micro", "weighted"):
        reference = f1_score(gold, answers, labels=labels, average=average, zero_division=0)
        assert fast["metrics"][f"{average}_f1"]["estimate"] == pytest.approx(reference)
    precision, recall, _, support = precision_recall_fscore_support(
        gold, answers, labels=labels, zero_division=0
    )
    for i, label in enumerate(labels):
        assert fast["per_label"][label]["recall"] == pytest.approx(recall[i])
        assert fast["per_label"][label]["precision"] == pytest.approx(precision[i])
        assert fast["per_label"][label]["support"] == support[i]
    assert sum(map(sum, fast["confusion_matrix"])) == N_TEST - n_abstained
    # abstention section, calibration on the answered, selective coverage capped
    section = fast["abstention"]
    assert section["abstained"] == n_abstained
    assert section["coverage"]["estimate"] == pytest.approx(1 - n_abstained / N_TEST)
    answered_right = [r for r, a in zip(right, abstained, strict=True) if not a]
    assert section["accuracy_answered"] == pytest.approx(np.mean(answered_right))
    bins = fast["calibration"]["reliability_bins"]
    assert sum(b["count"] for b in bins) == N_TEST - n_abstained
    curve = fast["selective"]["risk_coverage"]
    assert max(curve["coverage"]) == pytest.approx(1 - n_abstained / N_TEST)
    assert fast["selective"]["coverage_at_precision"]["coverage"]["estimate"] <= 1 - (
        n_abstained / N_TEST
    )
    # the cascade section: shares of the test items
    shares = fast["cascade"]
    assert shares["abstained"] == n_abstained and shares["abstain_below"] == abstain
    total = sum(s["share"] for s in shares["stages"]) + shares["abstained_share"]
    assert total == pytest.approx(1.0)
    assert results.systems["linear"]["abstention"]["abstained"] == 0


def test_llm_predictions_count_their_tokens(setup) -> None:
    task, llm = setup["task"], setup["llm"]
    texts = setup["texts"][:5]
    before = llm.backend.tokens_processed
    predictions = llm.predict(texts)  # one batch (batch_size 8)
    decoded = llm.backend.tokens_processed - before
    for text, prediction in zip(texts, predictions, strict=True):
        cut = llm.backend.truncate(text, task.llm.max_text_tokens)[0]
        fixed, variable = llm.backend.prompt_tokens(build_prompt(task, cut))
        assert prediction.info["tokens_in"] == len(fixed) + len(variable)
        assert prediction.info["tokens_in_new"] == len(variable) < len(fixed) + len(variable)
        assert prediction.info["tokens_out"] == 0
        assert prediction.info["tokens_decoded"] == pytest.approx(decoded / len(texts))
    # every new prompt token was decoded (NusaX's labels are one token each: the prompt's last
    # logits score them, no label token needs decoding)
    assert decoded == sum(p.info["tokens_in_new"] for p in predictions)

    efficiency, again = measure_efficiency(
        llm, texts[:3], EfficiencySettings(sample=3, warmup=1, batch_sizes=(1,))
    )
    tokens = efficiency["tokens_per_item"]
    assert tokens["in"] == pytest.approx(np.mean([p.info["tokens_in"] for p in again]))
    assert tokens["in_new"] == pytest.approx(np.mean([p.info["tokens_in_new"] for p in again]))
    assert tokens["out"] == 0 and tokens["decoded"] > 0

    # generation reports the runtime's own counts
    generated = answer(llm.backend, task, build_prompt(task, texts[0]), texts[0], "constrained")
    # the same prompt, counted by llama.cpp's completion API (one BOS token apart at most)
    assert abs(generated.info["tokens_in"] - predictions[0].info["tokens_in"]) <= 1
    assert generated.info["tokens_out"] >= 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("model:m", [("model:m", None)]),
        ("model:m@0.9,llm:x", [("model:m", 0.9), ("llm:x", None)]),
        ("model:a@b@0.9, llm:x@0.5", [("model:a@b", 0.9), ("llm:x", 0.5)]),
        (
            "model:m@1,llm:openai:http://h:8/v1#q@0",
            [("model:m", 1.0), ("llm:openai:http://h:8/v1#q", 0.0)],
        ),
    ],
)
def test_cascade_specs_that_parse(value: str, expected: list[tuple[str, float | None]]) -> None:
    stages = parse_cascade(f"fast=cascade:{value}", value)
    assert [(stage.name, stage.threshold) for stage in stages] == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("model:m,llm:x", "stage 1 `model:m`: every stage but the last needs @THRESHOLD"),
        ("model:m@high,llm:x", "stage 1 `model:m@high`: threshold `high` after @ is not a number"),
        ("model:m@1.5,llm:x", "threshold 1.5 is not a probability in [0, 1]"),
        ("model:m@0.9,llm:x@nan", "stage 2 `llm:x@nan`: threshold nan is not a probability"),
        ("model:m@0.9,,llm:x", "stage 2 ``: the stage is empty"),
        ("preds:p.jsonl@0.9,llm:x", "unknown stage source `preds:`"),
        ("cascade:model:m@0.9,llm:x", "cascades do not nest"),
        ("model:m@0.9,model:m", "`model:m` is already a stage"),
        ("model@0.9,llm:x", "a stage is SOURCE:VALUE"),
    ],
)
def test_bad_cascade_specs(tmp_path: Path, value: str, fragment: str) -> None:
    task = load_task(write_task(tmp_path, NUSAX_TASK))
    spec = f"fast=cascade:{value}"
    with pytest.raises(StillhouseError) as error:
        open_systems([spec], task)  # checked before any model is opened
    assert error.value.code == "E539"
    assert fragment in error.value.message and f"--system `{spec}`" in error.value.message


def test_a_cascade_needs_a_classify_task(tmp_path: Path) -> None:
    text = 'name = "m"\nkind = "multilabel"\n[labels]\na = "a"\nb = "b"\n'
    multilabel = load_task(write_task(tmp_path, text))
    with pytest.raises(StillhouseError) as error:
        open_systems(["fast=cascade:model:m@0.9,llm:x"], multilabel)
    assert error.value.code == "E540" and "multilabel" in error.value.message


def test_evaluate_runs_a_cascade_from_the_cli(setup, run_cli) -> None:
    folder, model_dir = setup["folder"], setup["model_dir"]
    _, threshold, abstain = abstaining_cascade(setup)
    spec = f"fast=cascade:model:{model_dir}@{threshold!r},llm:smollm2-135m@{abstain!r}"
    base = ("evaluate", "--task", "task.toml", "--test", "test.jsonl", "--bootstrap", "200")
    result = run_cli(
        folder,
        *base,
        *("--system", spec, "--system", f"linear=model:{model_dir}"),
        *("--efficiency-sample", "4", "--perturb", "contractions", "--out", "report"),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads((folder / "report" / "results.json").read_text(encoding="utf-8"))
    fast = document["systems"]["fast"]
    stage_names = [f"model:{model_dir}", "llm:smollm2-135m"]
    assert [s["name"] for s in fast["cascade"]["stages"]] == stage_names
    assert fast["description"]["type"] == "cascade"
    assert fast["abstention"]["abstained"] == fast["cascade"]["abstained"] > 0
    assert all(error["predicted"] != "" for error in fast["most_confident_errors"])
    assert fast["robustness"]["perturbations"]["contractions"]["changed"] == 5
    assert document["provenance"]["model_hashes"]["fast"] == fast["description"]["sha256"]
    tokens = fast["efficiency"]["tokens_per_item"]
    assert tokens is not None and tokens["out"] == 0
    assert document["systems"]["linear"]["efficiency"]["tokens_per_item"] is None
    html = (folder / "report" / "report.html").read_text(encoding="utf-8")
    assert "<h3>Cascades</h3>" in html and "llm:smollm2-135m" in html
    assert "fast · cascade: answered by" in result.stdout
    assert "usable as a cascade stage's @THRESHOLD" in result.stdout

    bad = run_cli(
        folder,
        *base,
        *("--system", "fast=cascade:model:x@0.9,llm:y@2", "--out", "bad"),
    )
    assert bad.returncode == 2 and not (folder / "bad").exists()
    assert "stage 2 `llm:y@2`: threshold 2 is not a probability" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr


def test_a_thresholded_stage_without_probabilities_is_refused(setup, tmp_path: Path) -> None:
    texts = setup["texts"][:3]
    rows = [{"id": text_id(text), "label": "neutral"} for text in texts]  # no probs
    write_jsonl(tmp_path / "labels.jsonl", rows)
    labels_only = PredictionsFile(tmp_path / "labels.jsonl", setup["task"])
    cascade = Cascade(
        [Stage("labels", labels_only, 0.9), Stage("linear", setup["linear"], None)], name="f"
    )
    with pytest.raises(StillhouseError) as error:
        cascade.predict(texts)
    assert error.value.code == "E541" and "stage `labels`" in error.value.message
    # as the last stage without a threshold it needs none
    last = Cascade([Stage("linear", setup["linear"], 0.0), Stage("labels", labels_only, None)])
    assert [p.answer for p in last.predict(texts)] == [
        p.answer for p in setup["linear"].predict(texts)
    ]
