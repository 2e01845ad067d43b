"""`stillhouse monitor` end to end: a real `linear` model's answers logged through the serve app's
PredictionLog into a real store (an unshifted day, then a shifted one), a baseline from the real
`predict` and `evaluate` commands, monitor.json and the offline monitor.html, and `stillhouse
gate` reading monitor.json (alone and with results.json)."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stillhouse.cli import app
from stillhouse.data.records import text_id
from stillhouse.evaluate.intervals import wilson_interval
from stillhouse.monitor.html import SECTIONS
from stillhouse.monitor.report import read_monitor
from stillhouse.serve.prediction_log import LoggedPrediction, PredictionLog
from stillhouse.task import Task, load_task
from stillhouse.train import TrainSettings, load_model, train

REPO = Path(__file__).resolve().parents[2]
NUSAX = REPO / "examples" / "nusax-sentiment-en"
DAY_1 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()  # the unshifted traffic, over 6 hours
DAY_2 = datetime(2026, 11, 2, tzinfo=UTC).timestamp()  # the shifted traffic
GATE = """
[gate]
min_accuracy = 0.5
max_label_psi = 0.25
max_abstention_rate = 0.2
min_estimated_accuracy = 0.6
"""
# Out-of-language traffic on day 2 (German and Spanish reviews, as the shifted stream's tail)
FOREIGN = [
    "Das Essen war kalt und der Kellner war sehr unfreundlich zu uns.",
    "Ich bin mit dem Service überhaupt nicht zufrieden, nie wieder.",
    "Die Lieferung kam drei Tage zu spät und die Verpackung war kaputt.",
    "Das Zimmer war schmutzig und das Personal hat nicht geholfen.",
    "Der Akku hält nur zwei Stunden, das Gerät ist eine Enttäuschung.",
    "La comida estaba fría y el camarero fue muy grosero con nosotros.",
    "El pedido llegó tarde y el producto estaba roto, muy decepcionado.",
    "No recomiendo este hotel, la habitación olía mal y hacía ruido.",
    "El servicio al cliente nunca respondió a mis correos electrónicos.",
    "Pagué mucho dinero por una experiencia terrible en este restaurante.",
]


@dataclass
class Served:
    root: Path
    task: Task
    task_path: Path
    model: Path
    baseline: Path  # the test set's first half (labels)
    preds: Path  # the model's predictions on it (`stillhouse predict`)
    results: Path  # `stillhouse evaluate` of the model on it
    day_1_right: np.ndarray  # which logged answers of day 1 were right (abstentions: wrong)
    day_2_right: np.ndarray


def cli(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"}
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


def log_day(
    task: Task, model, rows: list[dict], start: float, hours: float, threshold: float = 0.4
) -> np.ndarray:
    """The model's answers on ``rows`` as a server would log them over ``hours`` from
    ``start`` (texts logged; below ``threshold`` confidence it abstains); which were right."""
    probs = model.probabilities([row["text"] for row in rows])
    records, right = [], []
    for i, (row, p) in enumerate(zip(rows, probs, strict=True)):
        best = int(p.argmax())
        abstained = bool(p[best] < threshold)
        answer = "" if abstained else model.labels[best]
        right.append(answer == row.get("label"))
        records.append(
            LoggedPrediction(
                time=start + hours * 3600 * i / len(rows),
                system="linear",
                version="v1",
                text=row["text"],
                answer=answer,
                probs=dict(zip(model.labels, map(float, p), strict=True)),
                confidence=float(p[best]),
                stage=None,
                abstained=abstained,
                latency_ms=0.5 + i % 3,
            )
        )
    with PredictionLog(task, log_texts=True) as log:
        log.record(records)
    assert log.stats()["written"] == len(records)
    return np.array(right)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, write_task) -> Served:
    root = tmp_path_factory.mktemp("monitor")
    task_path = write_task(root / "task")
    task_path.write_text(task_path.read_text(encoding="utf-8") + GATE, encoding="utf-8")
    task = load_task(task_path)

    def rows(name: str) -> list[dict]:
        with (NUSAX / name).open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))

    test = rows("test.csv")
    first, second = test[:200], test[200:]
    data = root / "data"
    data.mkdir()
    for name, part in (("train.jsonl", rows("train.csv")), ("baseline.jsonl", first)):
        (data / name).write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    train(
        task,
        root / "model",
        TrainSettings(latency_texts=5, throughput_texts=10),
        data=data / "train.jsonl",
    )
    model = load_model(root / "model")
    code, said = cli(
        "predict", "--model", root / "model", "--input", data / "baseline.jsonl",
        "--task", task_path, "--out", root / "preds.jsonl",
    )  # fmt: skip
    assert code == 0, said
    code, said = cli(
        "evaluate", "--task", task_path, "--test", data / "baseline.jsonl",
        "--system", f"linear=preds:{root / 'preds.jsonl'}", "--out", root / "evaluated",
    )  # fmt: skip
    assert code == 0, said
    day_1 = log_day(task, model, second, DAY_1, hours=6)
    # day 2: negative reviews only, then foreign-language ones
    negative = [row for row in second if row["label"] == "negative"]
    day_2 = log_day(task, model, negative + [{"text": t} for t in FOREIGN], DAY_2, hours=2)
    return Served(
        root,
        task,
        task_path,
        root / "model",
        data / "baseline.jsonl",
        root / "preds.jsonl",
        root / "evaluated" / "results.json",
        day_1,
        day_2,
    )


@pytest.fixture(scope="module")
def day_1(served: Served) -> dict:
    """The unshifted day (until day 2)."""
    out = served.root / "reports" / "day1"
    code, said = cli(
        "monitor", "--task", served.task_path, "--until", "2026-11-02",
        "--baseline", served.baseline, "--baseline", served.preds, "--out", out,
    )  # fmt: skip
    assert code == 0, said
    assert f"wrote {out / 'monitor.json'} and" in " ".join(said.split())  # however it wraps
    return {"out": out, "stdout": said, "doc": read_monitor(out / "monitor.json").document}


@pytest.fixture(scope="module")
def day_2(served: Served) -> dict:
    out = served.root / "reports" / "day2"
    code, said = cli(
        "monitor", "--task", served.task_path, "--since", "2026-11-02",
        "--baseline", served.baseline, "--baseline", served.preds, "--out", out,
    )  # fmt: skip
    assert code == 0, said
    return {"out": out, "stdout": said, "doc": read_monitor(out / "monitor.json").document}


# ------------------------------------------------------------------------------------------------


def test_the_unshifted_day_is_calm_and_its_estimate_covers_the_true_accuracy(
    served: Served, day_1: dict
) -> None:
    doc = day_1["doc"]
    window = doc["window"]
    assert window["system"] == "linear" and window["predictions"] == 200
    assert window["until"] == "2026-11-02T00:00:00+00:00" and window["texts_logged"] == 200
    assert window["first"].startswith("2026-11-01T00:00")
    shift = doc["label_shift"]
    assert shift["level"] == "none" and shift["baseline_label_source"] == "predicted"
    assert shift["psi"] < 0.1 and shift["chi_square"]["p_value"] > 0.01
    assert sum(shift["window_counts"].values()) == 200 - doc["abstention"]["count"]
    estimate = doc["estimated_accuracy"]
    truth = served.day_1_right.mean()
    assert estimate["low"] <= truth <= estimate["high"], (estimate, truth)
    # the baseline: accuracy from the predictions against the labels; estimated the same way
    baseline = doc["baseline"]
    assert [s["kind"] for s in baseline["sources"]] == ["test set", "predictions"]
    assert baseline["accuracy"] == pytest.approx(_accuracy(served.preds, served.baseline))
    assert doc["confidence_shift"]["ks"]["p_value"] > 0.01
    assert [a["what"] for a in doc["alarms"]] == []
    assert doc["text"]["language"]["outside_task_languages"] < 0.05
    assert doc["fallback"] is None and "cascade" in doc["not_measured"]["fallback"]
    assert "label PSI" in day_1["stdout"] and "estimated accuracy" in day_1["stdout"]


def test_the_shifted_day_raises_the_alarms(served: Served, day_1: dict, day_2: dict) -> None:
    doc = day_2["doc"]
    assert doc["window"]["predictions"] == served.day_2_right.size
    shift = doc["label_shift"]
    assert shift["level"] == "major" and shift["chi_square"]["p_value"] < 1e-6
    # positive answers vanished, negative ones doubled: the two largest PSI terms
    assert {item["label"] for item in shift["top"][:2]} == {"positive", "negative"}
    assert shift["window_counts"]["positive"] < 0.1 * shift["window_answers"]
    what = {alarm["what"] for alarm in doc["alarms"]}
    assert {"label_shift", "language"} <= what, doc["alarms"]
    language = doc["text"]["language"]
    assert language["window"].get("de", 0) + language["window"].get("es", 0) > 0.05
    assert "alarm:" in day_2["stdout"]


def test_monitor_json_holds_every_section_of_its_schema(day_1: dict) -> None:
    doc = day_1["doc"]
    assert doc["schema"] == "stillhouse.monitor" and doc["schema_version"] == 1
    for key in (
        "created_at", "package_versions", "task", "settings", "window", "baseline",
        "label_shift", "confidence_shift", "estimated_accuracy", "abstention", "fallback",
        "latency_ms", "text", "over_time", "alarms", "not_measured",
    ):  # fmt: skip
        assert key in doc, key
    assert set(doc["estimated_accuracy"]) >= {"estimate", "low", "high", "n", "interval"}
    assert set(doc["abstention"]["rate"]) == {"estimate", "low", "high"}
    assert doc["latency_ms"]["p50"] == pytest.approx(1.5)
    buckets = doc["over_time"]["buckets"]
    assert sum(b["n"] for b in buckets) == 200 and len(buckets) >= 6  # 6 hours of traffic
    assert doc["settings"]["until"] == "2026-11-02"


def test_over_time_rates_are_the_counts_per_bucket(served: Served, day_1: dict) -> None:
    with sqlite3.connect(served.task.store_path) as db:
        rows = db.execute(
            "SELECT time, abstained, confidence FROM predictions WHERE time < ?", (DAY_2,)
        ).fetchall()
    over = day_1["doc"]["over_time"]
    size = over["bucket_seconds"]
    for bucket in over["buckets"]:
        inside = [r for r in rows if bucket["start"] <= r[0] < bucket["start"] + size]
        assert bucket["n"] == len(inside)
        assert bucket["abstention_rate"] == pytest.approx(np.mean([r[1] for r in inside]))
        expected = np.mean([0.0 if r[1] else r[2] for r in inside])
        assert bucket["estimated_accuracy"] == pytest.approx(expected)


def test_monitor_html_is_one_offline_page_with_charts(day_1: dict, day_2: dict) -> None:
    for report in (day_1, day_2):
        page = (report["out"] / "monitor.html").read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>")
        assert "<script" not in page and "@import" not in page
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
        assert not re.search(r"url\(", page)
        for key, _ in SECTIONS:
            assert f'<section id="{key}">' in page
        assert page.count("<svg") >= 3  # label bars, confidence histogram, rates over time
    assert 'class="alarm"' in (day_2["out"] / "monitor.html").read_text(encoding="utf-8")


def test_gate_reads_monitor_json(served: Served, day_1: dict, day_2: dict) -> None:
    calm, shifted = day_1["out"] / "monitor.json", day_2["out"] / "monitor.json"
    code, said = cli("gate", "--task", served.task_path, "--monitor", calm)
    assert code == 0, said
    assert "PASS" in said and "not checked: min_accuracy" in " ".join(said.split())
    code, said = cli("gate", "--task", served.task_path, "--monitor", calm, "--json")
    assert code == 0, said
    rules = {row["rule"]: row["passed"] for row in json.loads(said)["rules"]}
    assert rules == dict.fromkeys(
        ("max_label_psi", "max_abstention_rate", "min_estimated_accuracy"), True
    )

    code, said = cli("gate", "--task", served.task_path, "--monitor", shifted, "--json")
    assert code == 1
    verdict = json.loads(said)
    rows = {row["rule"]: row for row in verdict["rules"]}
    assert not rows["max_label_psi"]["passed"]
    assert "label PSI of `linear`" in rows["max_label_psi"]["reason"]
    assert rows["max_label_psi"]["measured"] == pytest.approx(day_2["doc"]["label_shift"]["psi"])
    assert verdict["not_checked"] == ["min_accuracy"]


def test_gate_reads_results_and_monitor_together(served: Served, day_1: dict) -> None:
    code, said = cli(
        "gate", "--task", served.task_path, "--results", served.results,
        "--monitor", day_1["out"] / "monitor.json", "--json",
    )  # fmt: skip
    assert code == 0, said
    verdict = json.loads(said)
    assert [row["rule"] for row in verdict["rules"]] == [
        "min_accuracy", "max_label_psi", "max_abstention_rate", "min_estimated_accuracy",
    ]  # fmt: skip
    assert "not_checked" not in verdict
    code, said = cli("gate", "--task", served.task_path, "--results", served.results)
    assert code == 0 and "not checked: max_label_psi" in said and "--monitor" in said


def test_a_failing_estimated_accuracy_rule_names_the_interval(served: Served, day_1: dict) -> None:
    strict = served.task_path.with_name("strict.toml")
    strict.write_text(
        served.task_path.read_text(encoding="utf-8").replace(
            "min_estimated_accuracy = 0.6", "min_estimated_accuracy = 0.99"
        ),
        encoding="utf-8",
    )
    code, said = cli("gate", "--task", strict, "--monitor", day_1["out"] / "monitor.json", "--json")
    assert code == 1
    row = next(r for r in json.loads(said)["rules"] if r["rule"] == "min_estimated_accuracy")
    estimate = day_1["doc"]["estimated_accuracy"]
    assert not row["passed"] and f"{estimate['low']:.3f}–{estimate['high']:.3f}" in row["reason"]


def test_the_real_command_refuses_bad_input_in_its_own_process(served: Served, run_cli) -> None:
    done = run_cli(
        served.root, "monitor", "--task", str(served.task_path), "--since", "last week",
        "--out", str(served.root / "never"),
    )  # fmt: skip
    assert done.returncode == 2 and "[E831]" in done.stderr and "Traceback" not in done.stderr
    assert "'last week'" in done.stderr and not (served.root / "never").exists()


def test_bad_input_is_one_clear_message_and_writes_nothing(served: Served, tmp_path: Path) -> None:
    out = tmp_path / "out"
    base = ["monitor", "--task", str(served.task_path), "--out", str(out)]
    for extra, code, words in (
        (["--since", "2026-11-31"], "E831", ["--since", "2026-11-31"]),
        (["--until", "soon"], "E831", ["--until", "soon"]),
        (["--since", "2026-11-03", "--until", "2026-11-02"], "E832", ["2026-11-03"]),
        (["--since", "2030-01-01"], "E833", ["since 2030-01-01", "it holds"]),
        (["--system", "other"], "E834", ["`other`", "`linear`"]),
        (["--baseline", str(tmp_path / "none.jsonl")], "E838", ["none.jsonl"]),
        (["--baseline", str(tmp_path)], "E848", ["folder"]),
        (["--baseline", str(served.task_path)], "E836", ["`.toml`"]),
        (["--baseline", str(served.baseline), "--baseline", str(served.baseline)], "E837", []),
        (["--first-stage", "llm"], "E840", ["`llm`"]),
    ):
        exit_code, said = cli(*base, *extra)
        assert exit_code == 2 and f"[{code}]" in said, (extra, said)
        assert all(word in said for word in words), (extra, said)
        assert "Traceback" not in said and not out.exists()


def test_an_output_on_an_input_is_refused_before_any_work(served: Served) -> None:
    before = served.task_path.read_bytes()
    exit_code, said = cli("monitor", "--task", served.task_path, "--out", served.task_path)
    assert exit_code == 2 and "[E120]" in said and served.task_path.read_bytes() == before
    exit_code, said = cli(
        "monitor", "--task", served.task_path, "--baseline", served.preds, "--out", served.root
    )
    assert exit_code == 0  # a folder that holds inputs is fine: only the two files are written


def test_a_store_without_logged_predictions_says_so(tmp_path: Path, write_task) -> None:
    task_path = write_task(tmp_path / "empty")
    exit_code, said = cli("monitor", "--task", task_path, "--out", tmp_path / "out")
    assert exit_code == 2 and "[E204]" in said  # no store at all
    with PredictionLog(load_task(task_path), policy="none") as log:
        log.record([])
    exit_code, said = cli("monitor", "--task", task_path, "--out", tmp_path / "out")
    assert exit_code == 2 and "[E833]" in said and "log policy" in said
    assert not (tmp_path / "out").exists()


def test_texts_not_logged_leave_text_measures_out_and_say_why(tmp_path: Path, write_task) -> None:
    task = load_task(write_task(tmp_path / "hashes"))
    with PredictionLog(task) as log:  # texts not logged: only their hashes
        log.record(
            [
                LoggedPrediction(DAY_1 + i, "m", "v", f"text {i}", "positive", None, 0.8, None,
                                 False, 1.0)
                for i in range(5)
            ]
        )  # fmt: skip
    with sqlite3.connect(task.store_path) as db:
        stored = db.execute("SELECT text, text_hash FROM predictions").fetchall()
    assert stored[0] == (None, text_id("text 0"))
    exit_code, said = cli("monitor", "--task", task.path, "--out", tmp_path / "out", "--json")
    assert exit_code == 0, said
    doc = json.loads(said)
    assert doc["text"] is None and "log_texts = true" in doc["not_measured"]["text"]
    assert (
        doc["label_shift"] is None and doc["not_measured"]["label_shift"] == "no --baseline given"
    )
    assert doc["estimated_accuracy"]["estimate"] == pytest.approx(0.8)


def test_a_cascade_has_fallback_and_abstention_rates(tmp_path: Path, write_task) -> None:
    """Stage `model` answers fast, `llm` slowly; the first stage is found by latency."""
    task = load_task(write_task(tmp_path / "cascade"))
    records = []
    for i in range(60):
        stage = "llm" if i % 3 == 0 else "model"
        abstained = i % 10 == 0
        records.append(
            LoggedPrediction(
                DAY_1 + 600 * i, "cascade", "v", f"text {i}", "" if abstained else "neutral",
                None, 0.3 if abstained else 0.9, stage, abstained,
                200.0 if stage == "llm" else 1.0,
            )
        )  # fmt: skip
    with PredictionLog(task) as log:
        log.record(records)
    exit_code, said = cli("monitor", "--task", task.path, "--out", tmp_path / "out", "--json")
    assert exit_code == 0, said
    doc = json.loads(said)
    fallback = doc["fallback"]
    assert fallback["first_stage"] == "model" and fallback["first_stage_from"].startswith("lowest")
    assert fallback["rate"]["estimate"] == pytest.approx(20 / 60)
    assert fallback["stages"] == {"model": 40, "llm": 20}
    assert doc["abstention"]["count"] == 6
    low, high = wilson_interval(6, 60)
    assert doc["abstention"]["rate"] == {"estimate": 0.1, "low": low, "high": high}
    buckets = doc["over_time"]["buckets"]
    # ten hours in the smallest bucket size giving at most 48 buckets: 15 minutes
    assert doc["over_time"]["bucket_seconds"] == 900
    for bucket in buckets:
        inside = [r for r in records if bucket["start"] <= r.time < bucket["start"] + 900]
        assert bucket["n"] == len(inside) > 0
        assert bucket["fallback_rate"] == np.mean([r.stage == "llm" for r in inside])
        assert bucket["abstention_rate"] == np.mean([r.abstained for r in inside])
    assert sum(b["n"] for b in buckets) == 60
    # the review queue has the abstained texts (whatever the log policy)
    with sqlite3.connect(task.store_path) as db:
        queued = db.execute("SELECT COUNT(*) FROM review_queue WHERE queue = 'abstained'")
        assert queued.fetchone()[0] == 6


def _accuracy(preds: Path, data: Path) -> float:
    gold = [json.loads(line)["label"] for line in data.read_text(encoding="utf-8").splitlines()]
    answers = [json.loads(line)["label"] for line in preds.read_text(encoding="utf-8").splitlines()]
    return float(np.mean([a == g for a, g in zip(answers, gold, strict=True)]))


def test_a_multilabel_system_gets_the_label_mix_but_no_estimated_accuracy(
    tmp_path: Path, write_task
) -> None:
    task_path = write_task(
        tmp_path / "topics",
        'name = "topics"\nkind = "multilabel"\n[labels]\nprice = "Price."\n'
        'delivery = "Delivery."\nquality = "Quality."\n',
    )
    baseline = tmp_path / "base.jsonl"
    baseline.write_text(
        '{"id": "a", "text": "Too expensive and late.", "label": ["price", "delivery"]}\n'
        '{"id": "b", "text": "Great build.", "label": ["quality"]}\n',
        encoding="utf-8",
    )
    answers = [("price",), ("price", "quality")]
    with PredictionLog(load_task(task_path)) as log:
        log.record(
            [
                LoggedPrediction(DAY_1 + i, "m", "v", f"text {i}", answers[i % 2], None, None,
                                 None, False, 1.0)
                for i in range(20)
            ]
        )  # fmt: skip
    exit_code, said = cli(
        "monitor", "--task", task_path, "--baseline", baseline, "--out", tmp_path / "o", "--json"
    )
    assert exit_code == 0, said
    doc = json.loads(said)
    assert doc["label_shift"]["window_counts"] == {"price": 20, "delivery": 0, "quality": 10}
    assert doc["label_shift"]["baseline_counts"] == {"price": 1, "delivery": 1, "quality": 1}
    assert doc["label_shift"]["baseline_label_source"] == "gold"
    assert doc["estimated_accuracy"] is None
    assert "classification only" in doc["not_measured"]["estimated_accuracy"]


def test_without_lingua_the_language_mix_is_left_out_and_said_why(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sys.modules["lingua"] = None`` is how Python marks a module as not importable."""
    import sys

    monkeypatch.setitem(sys.modules, "lingua", None)
    code, said = cli(
        "monitor", "--task", served.task_path, "--until", "2026-11-02",
        "--baseline", served.baseline, "--out", tmp_path / "out", "--json",
    )  # fmt: skip
    assert code == 0, said
    doc = json.loads(said)
    assert doc["text"]["language"] is None and doc["text"]["length"]["window"]["n"] == 200
    assert "stillhouse[audit]" in doc["not_measured"]["language"]
    page = (tmp_path / "out" / "monitor.html").read_text(encoding="utf-8")
    assert "stillhouse[audit]" in page
