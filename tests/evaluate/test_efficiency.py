"""Efficiency and reproducibility through evaluate(): a real TF-IDF + logistic-regression system
on 150 banking77 test messages (60 timed); predictions files are reported as not measured;
gate's max_p95_latency_ms reads the p95."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
from banking_system import (
    TfidfSystem,
    require_banking,
    sample_test_rows,
    write_banking_task,
    write_rows_jsonl,
)

from stillhouse.errors import StillhouseError
from stillhouse.evaluate import efficiency
from stillhouse.evaluate.efficiency import (
    MEMORY_POLL_SECONDS,
    EfficiencySettings,
    PeakMemory,
    reproducibility,
    sample_positions,
    size_on_disk,
)
from stillhouse.evaluate.results import Results, read_results, write_results
from stillhouse.evaluate.run import evaluate
from stillhouse.gate import gate
from stillhouse.predictors import PredictionsFile
from stillhouse.provenance import file_sha256
from stillhouse.task import Task, load_task

TIMING = EfficiencySettings(sample=60, warmup=3, batch_sizes=(1, 8, 32, 128))


class Fixture:
    def __init__(self, folder: Path) -> None:
        require_banking()
        self.folder = folder
        self.task: Task = load_task(write_banking_task(folder / "task"))
        self.rows = sample_test_rows(150, seed=9)
        self.test = write_rows_jsonl(folder / "test.jsonl", self.rows)
        self.system = TfidfSystem(self.task.label_names, folder / "tfidf")
        predictions = self.system.predict([row["text"] for row in self.rows])
        self.file = write_rows_jsonl(
            folder / "tfidf.jsonl",
            [
                {"id": row["id"], "label": p.answer, "probs": p.probs}
                for row, p in zip(self.rows, predictions, strict=True)
            ],
        )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    return Fixture(tmp_path_factory.mktemp("efficiency"))


@pytest.fixture(scope="module")
def results(data: Fixture) -> Results:
    systems = {"tfidf": data.system, "file": PredictionsFile(data.file, data.task)}
    computed = evaluate(data.task, data.test, systems, n_resamples=200, seed=2, efficiency=TIMING)
    return read_results(write_results(computed, data.folder / "out" / "results.json"))


def test_latency_throughput_size_and_parameters(data: Fixture, results: Results) -> None:
    efficiency = results.systems["tfidf"]["efficiency"]
    assert efficiency["sample"] == 60 and efficiency["warmup"] == 3
    latency = efficiency["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    throughput = efficiency["throughput"]
    assert set(throughput["by_batch_size"]) == {"1", "8", "32"}  # 128 > the 60 timed texts
    # batch size 1 throughput is the latency run's: 1000 / mean latency
    assert throughput["by_batch_size"]["1"] == pytest.approx(1000 / latency["mean"])
    rates = {int(size): rate for size, rate in throughput["by_batch_size"].items()}
    assert throughput["best_batch_size"] == max(rates, key=rates.__getitem__)
    assert throughput["items_per_second"] == max(rates.values())
    assert rates[32] > rates[1]  # one predict_proba call per 32 texts beats 32 calls
    classifier = data.system.model[-1]
    assert efficiency["parameters"] == classifier.coef_.size + classifier.intercept_.size
    assert efficiency["size_bytes"] == (data.folder / "tfidf" / "model.pkl").stat().st_size
    assert efficiency["peak_memory_bytes"] >= 0 and "RSS" in efficiency["memory_method"]
    assert efficiency["tokens_per_item"] is None  # not an LLM


def test_a_deterministic_model_reproduces_every_answer_and_probability(
    results: Results,
) -> None:
    repeated = results.systems["tfidf"]["reproducibility"]
    assert repeated["sample"] == 60
    assert repeated["identical_answers"] == 1.0 and repeated["identical_probabilities"] == 1.0
    assert repeated["max_probability_difference"] <= 1e-12


def test_reproducibility_counts_answers_and_probabilities_that_moved(data: Fixture) -> None:
    first = data.system.predict([row["text"] for row in data.rows[:10]])
    second = list(first)
    moved = {label: p for label, p in first[3].probs.items()}
    top = first[3].answer
    moved[top] -= 2e-6
    second[3] = dataclasses.replace(first[3], probs=moved)
    second[7] = dataclasses.replace(
        first[7], answer="card_arrival" if first[7].answer != "card_arrival" else "top_up_failed"
    )
    result = reproducibility(first, second)
    assert result["identical_answers"] == pytest.approx(0.9)
    assert result["identical_probabilities"] == pytest.approx(0.9)
    assert result["max_probability_difference"] == pytest.approx(2e-6)


def test_a_predictions_file_has_no_efficiency_and_the_hashes_are_recorded(
    data: Fixture, results: Results
) -> None:
    system = results.systems["file"]
    assert system["efficiency"] is None and system["reproducibility"] is None
    assert "predictions file" in system["not_measured"]["efficiency"]
    assert results.provenance["model_hashes"] == {"tfidf": None, "file": file_sha256(data.file)}
    assert results.settings["efficiency"] == {
        "sample": 60,
        "warmup": 3,
        "batch_sizes": [1, 8, 32, 128],
    }


def test_the_timed_sample_is_seeded_and_bounded() -> None:
    settings = EfficiencySettings(sample=20, seed=4)
    positions = sample_positions(100, settings)
    assert len(positions) == 20 and list(positions) == sorted(set(positions.tolist()))
    assert np.array_equal(positions, sample_positions(100, settings))
    assert len(sample_positions(5, settings)) == 5


def test_peak_memory_sees_native_allocations() -> None:
    with PeakMemory() as memory:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, allocated by numpy's C code
        block[::512] += 1.0
        del block
    assert memory.method == "kernel high-water mark"  # Linux, as on CI
    assert memory.peak_delta >= 63 * 2**20


def test_peak_memory_polls_where_the_kernel_keeps_no_resettable_peak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(efficiency, "_reset_kernel_peak", lambda: False)
    with PeakMemory() as memory:
        block = np.ones(64 * 2**20 // 8)
        time.sleep(20 * MEMORY_POLL_SECONDS)  # held long enough for several polls
        del block
    assert memory.method.startswith("psutil")
    assert memory.peak_delta >= 60 * 2**20


def test_size_on_disk_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"x" * 1000)
    (tmp_path / "m" / "sub").mkdir()
    (tmp_path / "m" / "sub" / "b.bin").write_bytes(b"y" * 24)
    assert size_on_disk({"path": str(tmp_path / "m")}) == 1024
    assert size_on_disk({"size_bytes": 7, "path": str(tmp_path / "m")}) == 7
    assert size_on_disk({"runtime": "remote"}) is None


def test_bad_efficiency_settings_are_refused(data: Fixture) -> None:
    systems = {"tfidf": data.system}
    with pytest.raises(StillhouseError) as error:
        evaluate(data.task, data.test, systems, efficiency=EfficiencySettings(batch_sizes=(0,)))
    assert error.value.code == "E515" and "batch sizes" in str(error.value)


def test_gate_max_p95_latency_reads_the_p95(
    data: Fixture, results: Results, tmp_path: Path
) -> None:
    p95 = results.systems["tfidf"]["efficiency"]["latency_ms"]["p95"]
    loose = load_task(write_banking_task(tmp_path / "loose", "max_p95_latency_ms = 100000"))
    strict = load_task(write_banking_task(tmp_path / "strict", "max_p95_latency_ms = 0.000001"))
    (passed,) = gate(loose, results).rows
    assert passed.passed and passed.measured == pytest.approx(p95)
    assert "p95 latency at batch size 1" in passed.reason and "60 texts" in passed.reason
    (failed,) = gate(strict, results).rows
    assert not failed.passed
    (unmeasured,) = gate(loose, results, system="file").rows
    assert not unmeasured.passed and "predictions file" in unmeasured.reason
