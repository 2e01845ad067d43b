"""Label shortlists (llm/shortlist.py, llm/retrieval.py) and `labels describe` (llm/describe.py)
on a small many-label task built from banking77 rows, with SmolLM2 through real llama.cpp."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stillhouse.annotate import annotate
from stillhouse.data.records import Example
from stillhouse.data.store import Store
from stillhouse.errors import StillhouseError
from stillhouse.llm.answer import softmax
from stillhouse.llm.backend import BackendSettings, open_backend
from stillhouse.llm.describe import proposals_toml, propose_descriptions, write_descriptions
from stillhouse.llm.label_trie import LabelTrie, TrieSearch
from stillhouse.llm.predictor import LLMPredictor
from stillhouse.llm.prompts import build_prompt
from stillhouse.llm.retrieval import LabelRetriever
from stillhouse.llm.shortlist import Plan, Shortlister, mix, shortlist_size
from stillhouse.task import load_task

BANKING77 = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "banking77"
N_LABELS = 24  # above 20: shortlists are on by default
SEED_PER_LABEL = 3

pytestmark = pytest.mark.skipif(
    not (BANKING77 / "train.csv").is_file(), reason=f"{BANKING77} is absent"
)


@pytest.fixture(scope="module")
def rows() -> dict[str, list[str]]:
    """label -> its train texts, for the first 24 labels in name order."""
    with (BANKING77 / "train.csv").open(encoding="utf-8") as handle:
        data = list(csv.DictReader(handle))
    labels = sorted({r["category"] for r in data})[:N_LABELS]
    return {label: [r["text"] for r in data if r["category"] == label] for label in labels}


def write_task(folder: Path, labels: list[str], extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f'{label} = "{label.replace("_", " ").capitalize()}."' for label in labels)
    (folder / "task.toml").write_text(
        'name = "tiny77"\nkind = "classify"\n'
        'instructions = "Classify the customer message by its intent."\n\n'
        f'[labels]\n{body}\n\n[input]\ntext = "text"\nlabel = "label"\n\n'
        f'[llm]\nmodel = "smollm2-135m"\nbatch_size = 4\n{extra}'
    )
    return folder / "task.toml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, rows: dict[str, list[str]]) -> Path:
    """A 24-label task and a file of 72 labelled seed texts plus 6 unlabelled test texts."""
    folder = tmp_path_factory.mktemp("tiny77")
    write_task(folder, list(rows))
    with (folder / "data.jsonl").open("w") as handle:
        for label, texts in rows.items():
            for i, text in enumerate(texts[:SEED_PER_LABEL]):
                handle.write(json.dumps({"id": f"s-{label}-{i}", "text": text, "label": label}))
                handle.write("\n")
        for label in list(rows)[:6]:
            handle.write(json.dumps({"id": f"t-{label}", "text": rows[label][10]}) + "\n")
    return folder


@pytest.fixture(scope="module")
def backend() -> Iterator:
    opened = open_backend("smollm2-135m", BackendSettings(threads=2, n_ctx=2048))
    yield opened
    opened.close()


def test_a_restricted_trie_search_opens_only_the_allowed_labels() -> None:
    trie = LabelTrie([[1, 2], [1, 3], [4, 5], [6]])
    search = TrieSearch(trie, 0.0, frozenset({0, 3}))
    search.start(np.log(np.full(8, 1 / 8)))
    assert [trie.nodes[n].token for n in search.frontier] == [1]  # 4 leads to label 2 only
    chosen = search.choose()
    search.take(chosen)
    search.absorb(chosen[0], np.zeros(8))
    totals, _ = search.totals()
    assert np.isfinite(totals[[0, 3]]).all()
    assert np.isneginf(totals[[1, 2]]).all()
    assert totals[0] == pytest.approx(np.log(1 / 8) + np.log(1 / 8))


def test_shortlist_size_auto_off_and_bad_values(tmp_path: Path, rows: dict) -> None:
    many = load_task(write_task(tmp_path / "many", list(rows)))
    few = load_task(write_task(tmp_path / "few", list(rows)[:5]))
    assert shortlist_size(many) == 10 and shortlist_size(few) == 0
    assert shortlist_size(many, 0) == 0 and shortlist_size(many, 24) == 0
    assert shortlist_size(many, 7) == 7
    with pytest.raises(StillhouseError) as error:
        shortlist_size(many, 1)
    assert error.value.code == "E561" and "--shortlist" in error.value.message
    set_one = load_task(write_task(tmp_path / "one", list(rows), "shortlist = 1\n"))
    with pytest.raises(StillhouseError, match=r"\[llm\]\.shortlist") as error:
        shortlist_size(set_one)
    assert error.value.code == "E561"


def test_mixed_probabilities_sum_to_one_with_coverage_inside_the_shortlist() -> None:
    labels = [f"l{i}" for i in range(6)]
    retriever = np.array([0.05, 0.4, 0.1, 0.3, 0.1, 0.05])
    plan = Plan((1, 3, 2), 0.8, "test", retriever)
    scores = np.full(6, -np.inf)
    scores[[1, 3, 2]] = [-1.0, -0.5, -3.0]
    answer = mix(labels, scores, plan, None)
    probs = np.array([answer.probs[label] for label in labels])
    assert probs.sum() == pytest.approx(1.0)
    assert probs[[1, 3, 2]].sum() == pytest.approx(0.8)
    # the rest in proportion to the retriever: l0 and l5 equal, l4 twice as much
    assert probs[4] == pytest.approx(2 * probs[0]) and probs[0] == pytest.approx(probs[5])
    assert answer.answer == "l3" and answer.info["shortlist"] == ["l1", "l3", "l2"]


def test_leave_one_out_coverage_counts_gold_in_the_top_k(tiny: Path) -> None:
    task = load_task(tiny / "task.toml")
    seed = [
        Example(r["id"], r["text"], gold=r["label"])
        for r in map(json.loads, (tiny / "data.jsonl").read_text().splitlines())
        if "label" in r
    ]
    retriever = LabelRetriever(task, seed)
    loo = retriever.leave_one_out
    assert loo is not None and loo.n == N_LABELS * SEED_PER_LABEL
    assert loo.coverage(N_LABELS) == pytest.approx((loo.n + 1) / (loo.n + 2))
    assert loo.coverage(10) == pytest.approx((np.sum(loo.ranks < 10) + 1) / (loo.n + 2))
    assert loo.coverage(1) < loo.coverage(5) <= loo.coverage(10)
    # a seed text does not retrieve itself: with one seed text per label removed, the label's
    # own score falls back to what the others and its description give
    shortlister = Shortlister(task, 5, seed)
    assert shortlister.cover == 0  # the default: the nearest seed texts
    nearest = shortlister.plan([seed[0].text], [seed[0].id], shots=3)[0].demos
    assert all(d.id != seed[0].id for d in nearest) and len(nearest) == 3
    shortlister.cover = 3  # [llm].shortlist_cover = 3: cover the top three shortlisted labels
    plans = shortlister.plan([seed[0].text], [seed[0].id], shots=3)
    assert all(d.id != seed[0].id for d in plans[0].demos)
    demo_labels = {d.gold for d in plans[0].demos}
    assert {task.label_names[i] for i in plans[0].indexes[:3]} <= demo_labels


@pytest.mark.slow
def test_subset_scores_equal_full_scores_of_those_labels(tiny: Path, backend) -> None:
    task = load_task(tiny / "task.toml")
    backend.tolerance = 0.0  # exact: both must score every allowed label fully
    prompts = [build_prompt(task, text) for text in ("my card has not arrived", "exchange rate?")]
    full = backend.score_labels_many(prompts, task.label_names)
    subsets = [(0, 5, 7, 11), (2, 3, 23)]
    part = backend.score_label_subsets(prompts, task.label_names, subsets)
    backend.tolerance = 0.05
    for whole, some, subset in zip(full, part, subsets, strict=True):
        # what the answer uses, the distribution over the shortlist, is the same; labels far in
        # the tail (below e^-12) may differ a little where either search's float sum of the
        # mass left reached 0 before its last tiny branch and shared a node's mass instead
        assert np.allclose(softmax(some[list(subset)]), softmax(whole[list(subset)]), atol=1e-4)
        likely = [i for i in subset if whole[i] > -12]
        assert likely and np.allclose(some[likely], whole[likely], atol=1e-4)
        assert np.isneginf(np.delete(some, list(subset))).all()


@pytest.mark.slow
def test_annotate_records_shortlists_and_keys_cache_on_them(tiny: Path, backend) -> None:
    task = load_task(tiny / "task.toml")
    data = tiny / "data.jsonl"
    first = annotate(task, data, shots=2, unlabelled_only=True, backend=backend, shortlist=5)
    assert first.annotated == 6 and first.invalid == 0 and first.cache_hits == 0
    with Store(task.store_path) as store:
        mine = [a for a in store.annotations(task.kind, first.annotator)]
    assert len(mine) == 6
    for annotation in mine:
        info = annotation.info
        assert len(info["shortlist"]) == 5
        assert info["shortlist_coverage_source"] == f"leave-one-out on {N_LABELS * 3} seed texts"
        assert sum(annotation.probs.values()) == pytest.approx(1.0)
        inside = sum(annotation.probs[label] for label in info["shortlist"])
        assert inside == pytest.approx(info["shortlist_coverage"], abs=1e-3)
        assert annotation.answer in info["shortlist"]
    # another K: another annotator and other cache keys (nothing reused)
    second = annotate(task, data, shots=2, unlabelled_only=True, backend=backend, shortlist=6)
    assert second.annotator != first.annotator and second.cache_hits == 0
    # without shortlists: the plain annotator again, no shortlist in the details
    plain = annotate(task, data, shots=2, unlabelled_only=True, backend=backend, shortlist=0)
    assert plain.annotator not in (first.annotator, second.annotator)
    with Store(task.store_path) as store:
        assert all("shortlist" not in a.info for a in store.annotations(task.kind, plain.annotator))
    # the same K again: resumed, nothing annotated anew
    again = annotate(task, data, shots=2, unlabelled_only=True, backend=backend, shortlist=5)
    assert again.annotator == first.annotator and again.resumed == 6 and again.annotated == 0


@pytest.mark.slow
def test_the_predictor_shortlists_with_an_assumed_coverage(tiny: Path) -> None:
    task = load_task(tiny / "task.toml")
    predictor = LLMPredictor(task, "smollm2-135m", BackendSettings(threads=2, n_ctx=2048))
    try:
        predictions = predictor.predict(["I still have not received my new card"])
    finally:
        predictor.close()
    info = predictions[0].info
    assert len(info["shortlist"]) == 10 and info["shortlist_coverage"] == pytest.approx(0.9)
    assert "assumed" in info["shortlist_coverage_source"]
    assert sum(predictions[0].probs.values()) == pytest.approx(1.0)


@pytest.mark.slow
def test_describe_proposes_without_touching_the_task_until_asked(
    tmp_path: Path, rows: dict, backend
) -> None:
    labels = list(rows)[:3]
    task_path = write_task(tmp_path / "t", labels)
    data = tmp_path / "seed.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"{label}-{i}", "text": rows[label][i], "label": label}) + "\n"
            for label in labels[:2]  # the third label has no seed text
            for i in range(2)
        )
    )
    before = task_path.read_text()
    task = load_task(task_path)
    proposals = propose_descriptions(task, data, per_label=2, backend=backend)
    assert task_path.read_text() == before
    assert [p.label for p in proposals] == labels
    assert all(p.proposed for p in proposals[:2]) and proposals[2].proposed is None
    assert all(len(p.proposed.splitlines()) == 1 for p in proposals[:2])
    table = proposals_toml(proposals)
    assert "no seed text: unchanged" in table and table.startswith("# proposed")
    assert write_descriptions(task_path, proposals) >= 1
    rewritten = load_task(task_path)
    assert rewritten.labels[labels[0]] == proposals[0].proposed
    assert rewritten.labels[labels[2]] == task.labels[labels[2]]
    assert rewritten.label_names == task.label_names


def test_describe_refuses_bad_input(tmp_path: Path, rows: dict) -> None:
    labels = list(rows)[:3]
    task = load_task(write_task(tmp_path / "t", labels))
    unlabelled = tmp_path / "texts.jsonl"
    unlabelled.write_text(json.dumps({"id": "a", "text": "hello"}) + "\n")
    for data, per_label, code in ((unlabelled, 5, "E562"), (unlabelled, 0, "E564")):
        with pytest.raises(StillhouseError) as error:
            propose_descriptions(task, data, per_label=per_label, model="no-such-model")
        assert error.value.code == code
