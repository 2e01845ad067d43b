"""Multilabel and span evaluation from predictions files, on real presidio-research texts
(synthetic PII, 17 entity types): multilabel = which types a text contains, spans = the
entities themselves. Point metrics against scikit-learn (multilabel) and a seqeval-style
reference written here (spans through character BIO tags), intervals against a brute-force
loop over the same resamples; the CLI writes results.json and report.html and gates them."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, hamming_loss
from sklearn.preprocessing import MultiLabelBinarizer

from stillhouse.errors import StillhouseError
from stillhouse.evaluate.bootstrap import resample_indices
from stillhouse.evaluate.results import Results
from stillhouse.evaluate.run import evaluate
from stillhouse.predictors import PredictionsFile
from stillhouse.task import Task, load_task

REPO = Path(__file__).resolve().parents[2]
PRESIDIO = REPO.parent / "shared" / "datasets" / "presidio_pii" / "synth_dataset_v2.json"
N_RESAMPLES = 200


def presidio_rows(n: int) -> list[dict[str, Any]]:
    if not PRESIDIO.is_file():
        pytest.skip(
            f"presidio_pii is not in {PRESIDIO.parent} (the shared datasets folder is absent)"
        )
    records = json.loads(PRESIDIO.read_text(encoding="utf-8"))[:n]
    rows = []
    for i, record in enumerate(records):
        spans = sorted(
            (s["start_position"], s["end_position"], s["entity_type"]) for s in record["spans"]
        )
        rows.append({"id": f"p{i:04d}", "text": record["full_text"], "spans": spans})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


class Fixture:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rows = presidio_rows(300)
        self.types = sorted({label for row in self.rows for _, _, label in row["spans"]})
        self.multilabel = self._task("multilabel", "labels")
        self.spans = self._task("spans", "spans")
        rng = np.random.default_rng(3)
        self.gold_labels = [sorted({label for _, _, label in row["spans"]}) for row in self.rows]
        self.gold_spans = [row["spans"] for row in self.rows]
        self.ml_test = write_jsonl(
            folder / "ml-test.jsonl",
            [
                {"id": r["id"], "text": r["text"], "labels": g}
                for r, g in zip(self.rows, self.gold_labels, strict=True)
            ],
        )
        self.span_test = write_jsonl(
            folder / "span-test.jsonl",
            [
                {
                    "id": r["id"],
                    "text": r["text"],
                    "spans": [{"start": s, "end": e, "label": t} for s, e, t in r["spans"]],
                }
                for r in self.rows
            ],
        )
        self.ml_predictions = {
            name: self._noisy_labels(rng, p) for name, p in (("good", 0.03), ("poor", 0.12))
        }
        self.span_predictions = {
            name: self._noisy_spans(rng, p) for name, p in (("good", 0.1), ("poor", 0.35))
        }
        self.ml_files = {
            name: write_jsonl(
                folder / f"ml-{name}.jsonl",
                [{"id": r["id"], **p} for r, p in zip(self.rows, rows, strict=True)],
            )
            for name, rows in self.ml_predictions.items()
        }
        self.span_files = {
            name: write_jsonl(
                folder / f"span-{name}.jsonl",
                [
                    {
                        "id": r["id"],
                        "spans": [{"start": s, "end": e, "label": t} for s, e, t in spans],
                    }
                    for r, spans in zip(self.rows, rows, strict=True)
                ],
            )
            for name, rows in self.span_predictions.items()
        }

    def _task(self, kind: str, field: str) -> Task:
        labels = "\n".join(f'{t} = "{t.lower().replace("_", " ")}"' for t in self.types)
        text = (
            f'name = "pii-{kind}"\nkind = "{kind}"\ninstructions = "Find personal data."\n'
            f'[labels]\n{labels}\n[input]\ntext = "text"\nlabel = "{field}"\n'
        )
        folder = self.folder / kind
        folder.mkdir()
        (folder / "task.toml").write_text(text, encoding="utf-8")
        return load_task(folder / "task.toml")

    def _noisy_labels(self, rng: np.random.Generator, flip: float) -> list[dict[str, Any]]:
        predictions = []
        for gold in self.gold_labels:
            probs = {}
            for label in self.types:
                present = label in gold
                if rng.random() < flip:
                    present = not present
                probs[label] = round(
                    float(rng.uniform(0.5, 1.0) if present else rng.uniform(0, 0.5)), 4
                )
            predictions.append(
                {"labels": [t for t in self.types if probs[t] >= 0.5], "probs": probs}
            )
        return predictions

    def _noisy_spans(
        self, rng: np.random.Generator, noise: float
    ) -> list[list[tuple[int, int, str]]]:
        """Each gold span kept, dropped, relabelled, or cut short by one character at random."""
        predictions = []
        for row in self.rows:
            spans = []
            for start, end, label in row["spans"]:
                roll = rng.random()
                if roll < noise / 3:
                    continue
                if roll < 2 * noise / 3:
                    label = str(rng.choice([t for t in self.types if t != label]))
                elif roll < noise and end - start > 1:
                    end -= 1
                spans.append((start, end, label))
            predictions.append(spans)
        return predictions


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    return Fixture(tmp_path_factory.mktemp("structured"))


@pytest.fixture(scope="module")
def multilabel(data: Fixture) -> Results:
    systems = {name: PredictionsFile(path, data.multilabel) for name, path in data.ml_files.items()}
    return evaluate(data.multilabel, data.ml_test, systems, n_resamples=N_RESAMPLES, seed=4)


@pytest.fixture(scope="module")
def spans(data: Fixture) -> Results:
    systems = {name: PredictionsFile(path, data.spans) for name, path in data.span_files.items()}
    return evaluate(data.spans, data.span_test, systems, n_resamples=N_RESAMPLES, seed=4)


def sklearn_multilabel(
    gold: list[list[str]], predicted: list[list[str]], types: list[str]
) -> dict[str, float]:
    binarizer = MultiLabelBinarizer(classes=types).fit([types])
    y, p = binarizer.transform(gold), binarizer.transform(predicted)
    return {
        "accuracy": accuracy_score(y, p),
        "micro_f1": f1_score(y, p, average="micro", zero_division=0),
        "macro_f1": f1_score(y, p, average="macro", zero_division=0),
        "weighted_f1": f1_score(y, p, average="weighted", zero_division=0),
        "hamming_loss": hamming_loss(y, p),
    }


@pytest.mark.parametrize("name", ["good", "poor"])
def test_multilabel_metrics_and_intervals_match_sklearn(
    data: Fixture, multilabel: Results, name: str
) -> None:
    predicted = [p["labels"] for p in data.ml_predictions[name]]
    metrics = multilabel.systems[name]["metrics"]
    expected = sklearn_multilabel(data.gold_labels, predicted, data.types)
    for metric, value in expected.items():
        assert metrics[metric]["estimate"] == pytest.approx(value), metric
    resampled = defaultdict(list)
    for drawn in resample_indices(len(data.rows), N_RESAMPLES, seed=4):
        scores = sklearn_multilabel(
            [data.gold_labels[i] for i in drawn], [predicted[i] for i in drawn], data.types
        )
        for metric, value in scores.items():
            resampled[metric].append(value)
    for metric, values in resampled.items():
        assert metrics[metric]["low"] == pytest.approx(np.quantile(values, 0.025)), metric
        assert metrics[metric]["high"] == pytest.approx(np.quantile(values, 0.975)), metric
    per_label = multilabel.systems[name]["per_label"]
    assert list(per_label) == data.types
    assert per_label["PERSON"]["support"] == sum("PERSON" in g for g in data.gold_labels)
    correct = [set(p) == set(g) for p, g in zip(predicted, data.gold_labels, strict=True)]
    assert multilabel.systems[name]["correct"] == [int(c) for c in correct]


def bio_tags(text: str, spans: list[tuple[int, int, str]]) -> list[str]:
    """One BIO tag per character (spans do not overlap in this data)."""
    tags = ["O"] * len(text)
    for start, end, label in spans:
        tags[start] = f"B-{label}"
        for k in range(start + 1, end):
            tags[k] = f"I-{label}"
    return tags


def seqeval_entities(tags: list[str]) -> set[tuple[str, int, int]]:
    """seqeval's get_entities for IOB2: (type, first, last) chunks, a chunk ends at O, at B-, or
    where the type changes."""
    entities, kind, begin = set(), None, 0
    for position, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        ends = kind is not None and (prefix in ("O", "B") or label != kind)
        if ends:
            entities.add((kind, begin, position - 1))
            kind = None
        if prefix == "B" or (prefix == "I" and kind is None):
            kind, begin = label, position
    return entities


def seqeval_scores(
    rows: list[dict[str, Any]], predicted: list[list[tuple[int, int, str]]]
) -> dict[str, Any]:
    counts = defaultdict(lambda: np.zeros(3))  # type → true positives, predicted, gold
    for row, spans in zip(rows, predicted, strict=True):
        gold = seqeval_entities(bio_tags(row["text"], row["spans"]))
        guess = seqeval_entities(bio_tags(row["text"], spans))
        for kind, _, _ in gold:
            counts[kind][2] += 1
        for entity in guess:
            counts[entity[0]][1] += 1
            counts[entity[0]][0] += entity in gold
    total = sum(counts.values())
    precision, recall = total[0] / total[1], total[0] / total[2]
    per_type = {
        kind: 2 * c[0] / (c[1] + c[2]) if c[1] + c[2] else 0.0 for kind, c in sorted(counts.items())
    }
    return {
        "precision": precision,
        "recall": recall,
        "micro_f1": 2 * precision * recall / (precision + recall),
        "macro_f1": float(np.mean(list(per_type.values()))),
        "per_type": per_type,
    }


@pytest.mark.parametrize("name", ["good", "poor"])
def test_span_metrics_match_a_seqeval_style_reference(
    data: Fixture, spans: Results, name: str
) -> None:
    predicted = data.span_predictions[name]
    expected = seqeval_scores(data.rows, predicted)
    metrics = spans.systems[name]["metrics"]
    for metric in ("precision", "recall", "micro_f1", "macro_f1"):
        assert metrics[metric]["estimate"] == pytest.approx(expected[metric]), metric
    per_type = spans.systems[name]["per_label"]
    assert {kind: scores["strict"]["f1"] for kind, scores in per_type.items()} == pytest.approx(
        expected["per_type"]
    )
    # a span cut short by one character still overlaps: partial recall ≥ strict recall
    assert metrics["partial_recall"]["estimate"] >= metrics["recall"]["estimate"]
    exact = [set(p) == set(r["spans"]) for p, r in zip(predicted, data.rows, strict=True)]
    assert metrics["accuracy"]["estimate"] == pytest.approx(np.mean(exact))


def test_span_intervals_match_a_brute_force_loop(data: Fixture, spans: Results) -> None:
    predicted = data.span_predictions["poor"]
    values = defaultdict(list)
    for drawn in resample_indices(len(data.rows), N_RESAMPLES, seed=4)[:N_RESAMPLES]:
        scores = seqeval_scores([data.rows[i] for i in drawn], [predicted[i] for i in drawn])
        values["micro_f1"].append(scores["micro_f1"])
        values["precision"].append(scores["precision"])
    metrics = spans.systems["poor"]["metrics"]
    for metric, drawn_values in values.items():
        assert metrics[metric]["low"] == pytest.approx(np.quantile(drawn_values, 0.025)), metric
        assert metrics[metric]["high"] == pytest.approx(np.quantile(drawn_values, 0.975)), metric


def test_structured_results_compare_systems_and_skip_classification_families(
    multilabel: Results, spans: Results
) -> None:
    for results in (multilabel, spans):
        (comparison,) = results.comparisons
        assert (comparison["a"], comparison["b"]) == ("good", "poor")
        assert comparison["difference"] > 0 and "good is better than poor" in comparison["sentence"]
        good = results.systems["good"]
        assert good["calibration"] is None and good["selective"] is None  # no scores given
        assert good["confusion_matrix"] is None
        assert len(good["most_confident_errors"]) == 20
    error = spans.systems["poor"]["most_confident_errors"][0]
    assert all(span["text"] for span in error["predicted"])  # filled in from the test text


def test_bad_structured_predictions_are_clear_errors(data: Fixture, tmp_path: Path) -> None:
    def error_of(call: Callable[[], Any]) -> StillhouseError:
        with pytest.raises(StillhouseError) as caught:
            call()
        return caught.value

    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "p0000", "labels": "PERSON"}])
    error = error_of(lambda: PredictionsFile(bad, data.multilabel))
    assert error.code == "E535" and "bad.jsonl:1:" in error.message
    bad = write_jsonl(
        tmp_path / "bad2.jsonl",
        [{"id": "p0000", "labels": ["PERSON"], "probs": {t: 1.5 for t in data.types}}],
    )
    error = error_of(lambda: PredictionsFile(bad, data.multilabel))
    assert error.code == "E536" and "outside [0, 1]" in error.message
    bad = write_jsonl(
        tmp_path / "bad3.jsonl",
        [{"id": "p0000", "spans": [{"start": 5, "end": 2, "label": "PERSON"}]}],
    )
    assert error_of(lambda: PredictionsFile(bad, data.spans)).code == "E535"
    rows = [{"id": r["id"], "spans": []} for r in data.rows]
    rows[2]["spans"] = [{"start": 0, "end": 10_000, "label": "PERSON"}]
    beyond = write_jsonl(tmp_path / "beyond.jsonl", rows)
    systems = {"beyond": PredictionsFile(beyond, data.spans)}
    error = error_of(lambda: evaluate(data.spans, data.span_test, systems, n_resamples=10))
    assert error.code == "E537" and "'p0002'" in error.message


def test_the_cli_evaluates_and_gates_a_span_task(
    data: Fixture, run_cli: Callable[..., Any]
) -> None:
    task = data.folder / "spans" / "task.toml"
    task.write_text(
        task.read_text(encoding="utf-8") + "[gate]\nmin_macro_f1 = 0.5\nmax_ece = 0.1\n",
        encoding="utf-8",
    )
    result = run_cli(
        data.folder,
        *("evaluate", "--task", str(task), "--test", str(data.span_test), "--bootstrap", "100"),
        *("--system", f"good=preds:{data.span_files['good']}", "--out", "span-report"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    page = (data.folder / "span-report" / "report.html").read_text(encoding="utf-8")
    assert "confusion matrices are for classification tasks" in page
    gated = run_cli(
        data.folder, "gate", "--task", str(task), "--results", "span-report/results.json", "--json"
    )
    assert gated.returncode == 1, gated.stdout + gated.stderr  # max_ece cannot be measured
    rules = {row["rule"]: row for row in json.loads(gated.stdout)["rules"]}
    assert rules["min_macro_f1"]["passed"] is True
    assert rules["max_ece"]["passed"] is False and rules["max_ece"]["measured"] is None


def test_scored_spans_get_calibration_over_predicted_spans(
    data: Fixture, tmp_path: Path, run_cli: Callable[..., Any]
) -> None:
    """Right spans (exact gold matches) scored around 0.8, wrong ones around 0.6: the ECE,
    Brier score and NLL over predicted spans, checked against direct formulas."""
    rng = np.random.default_rng(5)
    rows, scores, right = [], [], []
    for row, spans in zip(data.rows, data.span_predictions["poor"], strict=True):
        gold = set(row["spans"])
        scored = []
        for start, end, label in spans:
            hit = (start, end, label) in gold
            score = round(float(np.clip(rng.normal(0.8 if hit else 0.6, 0.1), 0, 1)), 6)
            scored.append({"start": start, "end": end, "label": label, "score": score})
            scores.append(score)
            right.append(hit)
        rows.append({"id": row["id"], "spans": scored})
    path = write_jsonl(tmp_path / "scored.jsonl", rows)
    systems = {"scored": PredictionsFile(path, data.spans)}
    results = evaluate(data.spans, data.span_test, systems, n_resamples=20, seed=4)
    system = results.systems["scored"]
    calibration = system["calibration"]
    assert system["has_probabilities"] and "calibration" not in system["not_measured"]
    assert calibration["unit"] == "predicted span" and calibration["items"] == len(scores)
    s, r = np.array(scores), np.array(right, dtype=float)
    edges = np.linspace(0, 1, 11)
    bins = np.clip(np.digitize(s, edges[1:-1]), 0, 9)
    ece = sum(
        (bins == b).mean() * abs(r[bins == b].mean() - s[bins == b].mean()) for b in set(bins)
    )
    assert calibration["ece_10_equal_width"] == pytest.approx(ece)
    assert calibration["brier"] == pytest.approx(2 * np.mean((s - r) ** 2))
    clipped = np.clip(np.where(r == 1, s, 1 - s), np.finfo(float).eps, 1)
    assert calibration["nll"] == pytest.approx(-np.log(clipped).mean())
    assert sum(b["count"] for b in calibration["reliability_bins"]) == len(scores)
    assert calibration["temperature_scaling"]["evaluation_items"] > 0
    # a score outside [0, 1] is refused (spans without scores: no calibration, tested above)
    rows[0]["spans"] = [{"start": 0, "end": 3, "label": data.types[0], "score": 1.5}]
    bad = write_jsonl(tmp_path / "bad-score.jsonl", rows)
    with pytest.raises(StillhouseError) as caught:
        PredictionsFile(bad, data.spans)
    assert (
        caught.value.code == "E535" and "`score` must be a number in [0, 1]" in caught.value.message
    )
    # gate's max_ece is measured for a scored span system
    task = tmp_path / "task.toml"
    task.write_text(
        (data.folder / "spans" / "task.toml").read_text(encoding="utf-8").split("[gate]")[0]
        + "[gate]\nmax_ece = 0.5\n",
        encoding="utf-8",
    )
    result = run_cli(
        tmp_path,
        *("evaluate", "--task", str(task), "--test", str(data.span_test), "--bootstrap", "20"),
        *("--system", f"scored=preds:{path}", "--out", "report"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "items are its predicted spans" in page
    gated = run_cli(
        tmp_path, "gate", "--task", str(task), "--results", "report/results.json", "--json"
    )
    (rule,) = [row for row in json.loads(gated.stdout)["rules"] if row["rule"] == "max_ece"]
    assert rule["measured"] == pytest.approx(calibration["ece_10_equal_mass"])
    assert rule["measured"] < 0.5
    assert rule["passed"] is True and gated.returncode == 0, gated.stdout
