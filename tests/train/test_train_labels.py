"""The label policy on a real workspace store: gold > human > LLM, confidence filter, weights;
the checks that refuse training sets a classifier cannot learn from; the held-out split."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_data import NUSAX_TASK, nusax_train, write_task

from stillhouse.data.records import Annotation, Example
from stillhouse.data.store import Store
from stillhouse.errors import StillhouseError
from stillhouse.task import load_task
from stillhouse.train.labels import check_training_set, from_store
from stillhouse.train.split import stratified_holdout


def llm_annotation(example_id: str, answer: str, confidence: float) -> Annotation:
    rest = (1 - confidence) / 2
    probs = {label: rest for label in ("positive", "neutral", "negative")} | {answer: confidence}
    return Annotation(example_id, "llm:qwen@abc", answer, probs, created_at=1.0)


@pytest.fixture()
def workspace(tmp_path: Path):
    """12 NusaX texts: 0–2 gold (stored with the example), 3–5 human + LLM, 6–11 LLM only
    with confidences 0.95, 0.9, 0.6, 0.5, 0.99, 0.4."""
    task = load_task(write_task(tmp_path, NUSAX_TASK))
    rows = nusax_train(12)
    examples = [
        Example(row["id"], row["text"], gold=row["label"] if i < 3 else None)
        for i, row in enumerate(rows)
    ]
    confidences = [0.95, 0.9, 0.6, 0.5, 0.99, 0.4]
    annotations = [
        Annotation(rows[i]["id"], "human:ana", "neutral", created_at=2.0) for i in (3, 4, 5)
    ]
    annotations += [llm_annotation(rows[i]["id"], "positive", 0.7) for i in range(6)]
    annotations += [
        llm_annotation(rows[6 + i]["id"], "negative", c) for i, c in enumerate(confidences)
    ]
    with Store(task.store_path) as store:
        store.add_examples(examples, task.kind)
        store.add_annotations(annotations, task.kind)
    return task, rows


def test_best_takes_gold_then_human_then_llm_weighted_by_its_probability(workspace) -> None:
    task, rows = workspace
    training = from_store(task, "best", min_llm_confidence=0.55)
    chosen = dict(
        zip(
            training.ids,
            zip(training.labels, training.sources, training.weights, strict=True),
            strict=True,
        )
    )
    for row in rows[:3]:
        assert chosen[row["id"]] == (row["label"], "gold", 1.0)
    for row in rows[3:6]:
        assert chosen[row["id"]] == ("neutral", "human", 1.0)
    # 0.5 and 0.4 are below 0.55: dropped and counted
    assert [chosen[row["id"]][2] for row in rows[6:] if row["id"] in chosen] == pytest.approx(
        [0.95, 0.9, 0.6, 0.99]
    )
    assert training.mix == {"gold": 3, "human": 3, "llm": 4, "llm_below_confidence": 2}


def test_single_source_policies(workspace) -> None:
    task, _ = workspace
    assert set(from_store(task, "llm").sources) == {"llm"} and len(from_store(task, "llm")) == 12
    assert from_store(task, "human").labels == ["neutral"] * 3
    assert from_store(task, "gold").mix == {"gold": 3, "unlabelled": 9}


def test_a_store_without_usable_labels_is_refused(workspace, tmp_path: Path) -> None:
    task, _ = workspace
    with pytest.raises(StillhouseError) as error:
        from_store(task, "llm", min_llm_confidence=1.0)
    assert (
        error.value.code == "E706"
        and "12 LLM label(s) below --min-llm-confidence 1" in error.value.message
    )
    empty = load_task(write_task(tmp_path / "empty", NUSAX_TASK))
    with Store(empty.store_path) as store:
        store.add_examples([Example("a", "no label here")], "classify")
    with pytest.raises(StillhouseError) as error:
        from_store(empty)
    assert error.value.code == "E706" and "1 example(s) stored" in error.value.message
    nowhere = load_task(write_task(tmp_path / "nowhere", NUSAX_TASK))
    with pytest.raises(StillhouseError) as error:
        from_store(nowhere)
    assert error.value.code == "E706" and "does not exist" in error.value.message


def test_too_few_examples_and_a_single_label_are_refused(workspace) -> None:
    task, _ = workspace
    training = from_store(task, "best")  # gold 3 (mixed), human neutral 3, llm negative 6
    counts = training.label_counts()
    smallest = min(counts, key=lambda label: (counts[label], label))
    with pytest.raises(StillhouseError) as error:
        check_training_set(training, task, min_per_label=counts[smallest] + 1)
    assert error.value.code == "E704"
    assert f"Label {smallest!r} has {counts[smallest]} training example(s)" in error.value.message
    check_training_set(training, task, min_per_label=counts[smallest])
    with pytest.raises(StillhouseError) as error:
        check_training_set(from_store(task, "human"), task, min_per_label=0)
    assert error.value.code == "E705" and "'neutral'" in error.value.message


def test_the_held_out_split_is_stratified_seeded_and_keeps_a_training_row_per_label() -> None:
    labels = ["a"] * 10 + ["b"] * 5 + ["c"] * 2 + ["d"]
    train, held = stratified_holdout(labels, 0.2, seed=3)
    assert sorted(train + held) == list(range(len(labels))) and not set(train) & set(held)
    held_labels = [labels[i] for i in held]
    assert held_labels.count("a") == 2 and held_labels.count("b") == 1
    assert held_labels.count("c") == 1 and "d" not in held_labels
    assert stratified_holdout(labels, 0.2, seed=3) == (train, held)
    assert stratified_holdout(labels, 0.2, seed=4) != (train, held)
