"""report.html from a real evaluation (a TF-IDF model, a noisy predictions file with and one
without probabilities, 250 banking77 messages, a slice, perturbations, efficiency): one valid,
self-contained HTML file with every section, its charts drawn inside their canvases, and the
numbers and texts results.json holds.

No browser is installed on the machine these tests were written on (no chromium, chrome or
firefox), so the page is checked by parsing, not by rendering."""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from banking_system import (
    TfidfSystem,
    require_banking,
    sample_test_rows,
    trained_pipeline,
    write_banking_task,
    write_rows_jsonl,
)
from scipy.special import log_softmax, softmax

from stillhouse.evaluate.charts import pareto_front
from stillhouse.evaluate.efficiency import EfficiencySettings
from stillhouse.evaluate.report import SECTIONS, render_report, write_report
from stillhouse.evaluate.results import Results
from stillhouse.evaluate.run import evaluate
from stillhouse.evaluate.selective import risk_coverage_curve
from stillhouse.predictors import PredictionsFile
from stillhouse.task import load_task

VOID = {"meta", "br", "hr", "img", "input", "link", "rect", "line", "circle", "polyline", "path"}
SVG_LEAVES = {"rect", "line", "circle", "polyline"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    require_banking()
    folder = tmp_path_factory.mktemp("report")
    task = load_task(write_banking_task(folder / "task", meta=["length"]))
    rows = [
        {**row, "length": "short" if len(row["text"]) < 50 else "long"}
        for row in sample_test_rows(250, seed=1)
    ]
    rows[5] = {**rows[5], "text": "<script>alert('x')</script> & my card from https://example.com"}
    test = write_rows_jsonl(folder / "test.jsonl", rows)
    labels = task.label_names
    rng = np.random.default_rng(0)
    noisy = []
    for row in rows:  # right 70% of the time; probabilities peaked on the answer
        label = row["category"] if rng.random() < 0.7 else str(rng.choice(labels))
        if row is rows[5]:  # the hostile text is a wrong answer: the page must show it
            label = next(name for name in labels if name != row["category"])
        probs = rng.dirichlet(np.full(len(labels), 0.1)) * 0.3
        probs[labels.index(label)] += 0.7
        noisy.append(
            {
                "id": row["id"],
                "label": label,
                "probs": dict(zip(labels, probs.tolist(), strict=True)),
            }
        )
    write_rows_jsonl(folder / "noisy.jsonl", noisy)
    write_rows_jsonl(folder / "plain.jsonl", [{"id": n["id"], "label": n["label"]} for n in noisy])
    systems = {
        "tfidf": TfidfSystem(labels, folder / "tfidf"),
        "noisy": PredictionsFile(folder / "noisy.jsonl", task),
        "plain": PredictionsFile(folder / "plain.jsonl", task),
    }
    return evaluate(
        task,
        test,
        systems,
        n_resamples=200,
        slices=["length"],
        perturbations=["mild_mix", "typos"],
        efficiency=EfficiencySettings(sample=40),
    )


def visible(page: str) -> str:
    """The text a reader sees: tags dropped, entities decoded."""
    return unescape(re.sub(r"<[^>]+>", "", page))


@pytest.fixture(scope="module")
def page(results: Results, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = write_report(results, tmp_path_factory.mktemp("out") / "report.html")
    return path.read_text(encoding="utf-8")


class _Checker(HTMLParser):
    """Balanced tags, every attribute, and SVG marks checked against their viewBox."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.ids: list[str] = []
        self.canvas: tuple[float, float] | None = None
        self.svgs = 0
        self.marks = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.attributes += [(tag, name, value) for name, value in values.items()]
        if "id" in values:
            self.ids.append(values["id"])
        if tag == "svg":
            _, _, width, height = map(float, values["viewbox"].split())
            self.canvas = (width, height)
            self.svgs += 1
        elif tag in SVG_LEAVES and self.canvas is not None:
            self.marks += 1
            self._inside(tag, values)
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.open.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
            return
        self.open.pop()
        if tag == "svg":
            self.canvas = None

    def _inside(self, tag: str, values: dict[str, str]) -> None:
        assert self.canvas is not None
        width, height = self.canvas
        numbers = {
            k: float(v)
            for k, v in values.items()
            if k in ("x", "x1", "x2", "cx", "y", "y1", "y2", "cy")
        }
        if "points" in values:
            for pair in values["points"].split():
                x, y = map(float, pair.split(","))
                numbers.update(px=x, py=y)
                self._check(tag, numbers, width, height)
        self._check(tag, numbers, width, height)

    def _check(self, tag: str, numbers: dict[str, float], width: float, height: float) -> None:
        for key, value in numbers.items():
            limit = width if "x" in key else height
            if not -0.5 <= value <= limit + 0.5:
                self.problems.append(f"<{tag}> {key}={value} outside 0..{limit}")


@pytest.fixture(scope="module")
def checked(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    return checker


def test_the_page_is_well_formed_html_with_every_section(page: str, checked: _Checker) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert checked.problems == [] and checked.open == []
    assert [key for key, _ in SECTIONS] == [i for i in checked.ids if i in dict(SECTIONS)]
    for key, heading in SECTIONS:
        assert f'<section id="{key}"><h2>' in page, key
        assert heading.replace("?", "") in unescape(page)


def test_the_page_references_nothing_outside_itself(page: str, checked: _Checker) -> None:
    for tag, name, value in checked.attributes:
        assert not re.match(r"\s*(https?:)?//", value), (tag, name, value)
        if name in ("href", "src"):
            assert value.startswith("#"), (tag, name, value)
    assert not any(tag in ("script", "link", "img", "iframe") for tag, _, _ in checked.attributes)
    lowered = page.lower()
    assert "<script" not in lowered.replace("&lt;script", "")  # a test text is escaped
    assert "@import" not in lowered and "url(" not in lowered
    assert "&lt;script&gt;alert" in page  # the hostile text is shown, not run


def test_every_chart_is_drawn_inside_its_canvas(checked: _Checker) -> None:
    # reliability ×2 (probabilities), risk–coverage 1, Pareto 1, slice bars ×3, confusion ×3
    assert checked.svgs == 10
    assert checked.marks > 300


def test_the_page_shows_the_numbers_and_texts_of_results_json(results: Results, page: str) -> None:
    text = visible(page)
    for system in results.systems.values():
        accuracy = system["metrics"]["accuracy"]
        assert f"{accuracy['estimate']:.3f} [{accuracy['low']:.3f}–{accuracy['high']:.3f}]" in text
        assert len(system["most_confident_errors"]) == 20
        for error in system["most_confident_errors"]:
            assert error["text"] in text
    for comparison in results.comparisons:
        assert comparison["sentence"] in text
    robustness = results.systems["tfidf"]["robustness"]["perturbations"]["typos"]
    assert f"{robustness['flip_rate']['estimate']:.3f}" in text
    p95 = results.systems["tfidf"]["efficiency"]["latency_ms"]["p95"]
    assert f"{p95:.2f}" in text
    assert "a predictions file answers only the texts it was written for" in text


def test_the_most_confident_errors_are_the_wrong_answers_sorted_by_confidence(
    results: Results,
) -> None:
    system = results.systems["noisy"]
    correct = np.array(system["correct"])
    ids = results.data["ids"]
    errors = system["most_confident_errors"]
    assert all(correct[ids.index(error["id"])] == 0 for error in errors)
    assert all(error["predicted"] != error["gold"] for error in errors)
    confidences = [error["confidence"] for error in errors]
    assert confidences == sorted(confidences, reverse=True)
    plain = results.systems["plain"]["most_confident_errors"]  # no probabilities: test order
    wrong_ids = [
        i for i, right in zip(ids, results.systems["plain"]["correct"], strict=True) if not right
    ]
    assert [error["id"] for error in plain] == wrong_ids[:20]
    assert all(error["confidence"] is None for error in plain)


def test_the_stored_risk_coverage_curve_is_a_subsample_of_the_full_curve(
    results: Results,
) -> None:
    system = results.systems["noisy"]
    stored = system["selective"]["risk_coverage"]
    assert 2 <= len(stored["coverage"]) <= 101
    assert stored["coverage"][-1] == pytest.approx(1.0)
    assert stored["risk"][-1] == pytest.approx(1 - system["metrics"]["accuracy"]["estimate"])
    assert stored["coverage"] == sorted(stored["coverage"])
    assert stored["threshold"] == sorted(stored["threshold"], reverse=True)


def test_the_pareto_front_keeps_what_nothing_beats() -> None:
    # (latency, accuracy): b is slower and worse than a; d is fastest; c is most accurate
    points = [(10.0, 0.80), (20.0, 0.70), (50.0, 0.90), (1.0, 0.60)]
    assert pareto_front(points) == [3, 0, 2]


def test_a_report_without_optional_families_says_not_measured(results: Results) -> None:
    systems = {
        name: {
            **system,
            "calibration": None,
            "selective": None,
            "efficiency": None,
            "robustness": None,
        }
        for name, system in results.systems.items()
    }
    bare = Results(
        task=results.task,
        data=results.data,
        settings={**results.settings, "perturbations": [], "slices": []},
        provenance=results.provenance,
        systems={k: {**v, "slices": {}} for k, v in systems.items()},
        comparisons=results.comparisons,
    )
    text = visible(render_report(bare))
    assert text.count("Not measured:") >= 5
    assert "evaluate with --perturb" in text and "evaluate with --slice FIELD" in text


def test_risk_coverage_reference(results: Results) -> None:
    """The full curve the stored one is cut from ends where the system answers everything."""
    confidence = np.array([0.9, 0.8, 0.8, 0.4])
    correct = np.array([1, 0, 1, 0])
    curve = risk_coverage_curve(confidence, correct)
    assert curve.coverages.tolist() == [0.25, 0.75, 1.0]
    assert curve.risks.tolist() == pytest.approx([0.0, 1 / 3, 0.5])


def test_temperature_scaling_is_fitted_on_30_percent_and_scored_on_the_rest(
    results: Results,
) -> None:
    labels = results.task["labels"]
    rows = [json.loads(line) for line in Path(results.data["path"]).read_text().splitlines()]
    gold = np.array([labels.index(row["category"]) for row in rows])
    model = trained_pipeline()  # the tfidf system's model: its probabilities again
    columns = [list(model.classes_).index(label) for label in labels]
    probs = model.predict_proba([row["text"] for row in rows])[:, columns]
    predicted = probs.argmax(axis=1)
    scaling = results.systems["tfidf"]["calibration"]["temperature_scaling"]
    n = len(rows)
    assert (scaling["calibration_items"], scaling["evaluation_items"]) == (75, n - 75)
    # the documented split: the first 30% of default_rng(seed).permutation(n) calibrate
    order = np.random.default_rng(results.settings["seed"]).permutation(n)
    fit, held = order[:75], order[75:]
    log_probs = np.log(np.clip(probs, np.finfo(float).eps, 1))

    def nll(items: np.ndarray, temperature: float) -> float:
        scaled = log_softmax(log_probs[items] / temperature, axis=1)
        return float(-scaled[np.arange(len(items)), gold[items]].mean())

    t = scaling["temperature"]
    assert nll(fit, t) <= min(nll(fit, t * 0.97), nll(fit, t * 1.03))  # the NLL minimum
    assert scaling["nll_after"] == pytest.approx(nll(held, t))
    assert scaling["nll_before"] == pytest.approx(nll(held, 1.0))

    def ece_equal_mass(confidence: np.ndarray, right: np.ndarray) -> float:
        chunks = np.array_split(np.argsort(confidence, kind="stable"), 10)
        return sum(
            len(c) / len(confidence) * abs(right[c].mean() - confidence[c].mean()) for c in chunks
        )

    right = (predicted[held] == gold[held]).astype(float)
    scaled = softmax(log_probs[held] / t, axis=1)
    rows_held = np.arange(len(held))
    assert scaling["ece_before"] == pytest.approx(
        ece_equal_mass(probs[held, predicted[held]], right)
    )
    assert scaling["ece_after"] == pytest.approx(
        ece_equal_mass(scaled[rows_held, predicted[held]], right)
    )
    assert scaling["ece_after"] < scaling["ece_before"]  # this model is underconfident
    assert results.systems["plain"]["calibration"] is None
