"""Recipe `linear` end to end on 200 real NusaX rows: the model folder, its card, reproducible
hash, loading with checks (incomplete, other version, other labels), bad settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from train_data import NUSAX_TASK, nusax_test, nusax_train, write_task

from stillhouse.data.io import write_jsonl
from stillhouse.errors import StillhouseError
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, load_model, train

pytestmark = pytest.mark.slow

FAST = TrainSettings(recipe="linear", latency_texts=20, throughput_texts=100)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("linear")
    task = load_task(write_task(folder, NUSAX_TASK))
    data = folder / "train.jsonl"
    write_jsonl(data, nusax_train(200))
    summary = train(task, folder / "models" / "a", FAST, data=data)
    return task, data, folder, summary


def error_of(call) -> StillhouseError:
    with pytest.raises(StillhouseError) as error:
        call()
    return error.value


def test_the_folder_holds_the_model_and_a_complete_card(trained) -> None:
    _, data, folder, summary = trained
    model_dir = folder / "models" / "a"
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "README.md",
        "card.json",
        "manifest.json",
        "vocabulary.json",
        "weights.safetensors",
    ]
    assert not [
        p for p in (folder / "models").iterdir() if p.name.startswith(".")
    ]  # no temp dir left
    card = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))
    assert card == summary.card
    assert card["recipe"] == "linear" and card["labels"] == ["positive", "neutral", "negative"]
    assert (
        card["training_data"]["examples"] == 200
        and 38 <= card["training_data"]["held_out_rows"] <= 42
    )
    assert card["training_data"]["mix"] == {"gold": 200} and card["training_data"]["origin"] == str(
        data
    )
    calibration = card["calibration"]
    assert 0.05 < calibration["temperature"] < 20 and 0 <= calibration["ece_after"] <= 1
    accuracy = card["held_out"]["accuracy"]
    assert (
        accuracy["low"] <= accuracy["estimate"] <= accuracy["high"] and accuracy["estimate"] > 0.5
    )
    assert card["size_bytes"] == sum(entry["bytes"] for entry in card["files"].values())
    speed = card["speed"]
    assert speed["latency_ms_batch1"]["n"] == 20 and speed["latency_ms_batch1"]["p95"] > 0
    assert speed["throughput_per_s"] > 0 and speed["cpu"]
    assert "scikit-learn" in card["versions"] and card["hyper_parameters"]["char_ngrams"] == [2, 5]
    readme = (model_dir / "README.md").read_text(encoding="utf-8")
    assert "temperature" in readme and "p95 latency" in readme and card["model_sha256"] in readme


def test_same_seed_and_data_give_the_same_model_hash(trained) -> None:
    task, data, folder, summary = trained
    again = train(task, folder / "models" / "b", FAST, data=data)
    assert again.card["model_sha256"] == summary.card["model_sha256"]
    other_seed = train(
        task,
        folder / "models" / "c",
        TrainSettings(recipe="linear", seed=1, refit=False, latency_texts=5, throughput_texts=10),
        data=data,
    )
    assert other_seed.card["model_sha256"] != summary.card["model_sha256"]


def test_the_loaded_model_predicts_calibrated_probabilities(trained) -> None:
    task, _, folder, summary = trained
    model = load_model(folder / "models" / "a", task=task)
    rows = nusax_test(100)
    predictions = model.predict([row["text"] for row in rows])
    accuracy = sum(
        p.answer == row["label"] for p, row in zip(predictions, rows, strict=True)
    ) / len(rows)
    assert accuracy > 0.55  # 3 labels, 200 training rows
    for prediction in predictions[:10]:
        assert set(prediction.probs) == {"positive", "neutral", "negative"}
        assert sum(prediction.probs.values()) == pytest.approx(1.0)
        assert prediction.answer == max(prediction.probs, key=prediction.probs.get)
    assert model.describe()["model_sha256"] == summary.card["model_sha256"]


def test_incomplete_and_incompatible_folders_are_refused_on_load(trained, tmp_path: Path) -> None:
    _, _, folder, _ = trained
    source = folder / "models" / "a"
    assert error_of(lambda: load_model(tmp_path / "none")).code == "E720"
    cut = shutil.copytree(source, tmp_path / "cut")
    (cut / "weights.safetensors").unlink()
    error = error_of(lambda: load_model(cut))
    assert error.code == "E721" and "weights.safetensors is missing" in error.message
    truncated = shutil.copytree(source, tmp_path / "truncated")
    data = (truncated / "vocabulary.json").read_bytes()
    (truncated / "vocabulary.json").write_bytes(data[: len(data) // 2])
    error = error_of(lambda: load_model(truncated))
    assert error.code == "E725" and "vocabulary.json is not the file" in error.message
    no_card = shutil.copytree(source, tmp_path / "no-card")
    (no_card / "card.json").unlink()
    assert "it has no card.json" in error_of(lambda: load_model(no_card)).message
    future = shutil.copytree(source, tmp_path / "future")
    card = json.loads((future / "card.json").read_text(encoding="utf-8"))
    (future / "card.json").write_text(json.dumps({**card, "format_version": 99}), encoding="utf-8")
    error = error_of(lambda: load_model(future))
    assert error.code == "E722" and "version 99" in error.message
    other = load_task(write_task(tmp_path / "other", NUSAX_TASK.replace("neutral", "mixed")))
    error = error_of(lambda: load_model(source, task=other))
    assert error.code == "E723" and "positive, neutral, negative" in error.message


@pytest.mark.parametrize(
    ("settings", "code", "fragment"),
    [
        (
            TrainSettings(recipe="forest"),
            "E701",
            "Unknown recipe `forest`; use one of: linear, encoder",
        ),
        (TrainSettings(recipe="lora-llm", quantize="int8"), "E709", "q8_0, q4_k_m"),
        (TrainSettings(recipe="linear", quantize="int8"), "E709", "--quantize int8 does not apply"),
        (TrainSettings(recipe="encoder", quantize="q4_k_m"), "E709", "lora-llm"),
        (
            TrainSettings(recipe="linear", min_per_label=50),
            "E704",
            "Label 'neutral' has 48 training",
        ),
        (TrainSettings(recipe="linear", holdout=0.9), "E708", "--holdout must be a share"),
        (TrainSettings(recipe="linear", max_memory_gb=0.001), "E710", "would need about"),
        (TrainSettings(recipe="linear", char_ngrams=(5, 2)), "E708", "--char-ngrams must be"),
        (
            TrainSettings(recipe="linear", word_ngrams=None, char_ngrams=None),
            "E708",
            "a range for at least one of them",
        ),
        (
            TrainSettings(recipe="encoder", char_ngrams=None),
            "E746",
            "does not apply to recipe `encoder`",
        ),
    ],
)
def test_bad_settings_are_refused_and_nothing_is_written(trained, settings, code, fragment) -> None:
    task, data, folder, _ = trained
    out = folder / "models" / f"bad-{code}"
    error = error_of(lambda: train(task, out, settings, data=data))
    assert error.code == code and fragment in error.message, error.message
    assert not out.exists()
    assert not [p for p in (folder / "models").iterdir() if p.name.startswith(".")]


def test_an_existing_output_folder_is_not_overwritten(trained) -> None:
    task, data, folder, _ = trained
    error = error_of(lambda: train(task, folder / "models" / "a", FAST, data=data))
    assert error.code == "E711"
    assert error_of(lambda: train(task, folder / "models" / "x", FAST)).code == "E707"


def test_one_example_per_label_is_refused_for_want_of_a_held_out_split(trained) -> None:
    task, _, folder, _ = trained
    rows = nusax_train(200)
    one_each = [next(row for row in rows if row["label"] == label) for label in task.label_names]
    data = folder / "one-each.jsonl"
    write_jsonl(data, one_each)
    out = folder / "models" / "one-each"
    settings = TrainSettings(recipe="linear", min_per_label=1)
    error = error_of(lambda: train(task, out, settings, data=data))
    assert error.code == "E747" and "The 3 training example(s)" in error.message, error.message
    assert not out.exists()


def test_words_only_featurizes_without_character_ngrams_and_reloads(trained) -> None:
    task, data, folder, _ = trained
    settings = TrainSettings(
        recipe="linear",
        word_ngrams=(1, 1),
        char_ngrams=None,
        latency_texts=20,
        throughput_texts=100,
    )
    card = train(task, folder / "models" / "words", settings, data=data).card
    assert card["hyper_parameters"]["word_ngrams"] == [1, 1]
    assert card["hyper_parameters"]["char_ngrams"] is None
    vocabulary = json.loads((folder / "models" / "words" / "vocabulary.json").read_text())
    assert list(vocabulary) == ["word"] and all(" " not in term for term in vocabulary["word"])
    model = load_model(folder / "models" / "words")
    assert model.scorer.features(["good food"]).shape[1] == len(vocabulary["word"])
    texts = [row["text"] for row in nusax_test(40)]
    words, both = (
        model.probabilities(texts),
        load_model(folder / "models" / "a").probabilities(texts),
    )
    assert np.allclose(words.sum(axis=1), 1.0) and not np.allclose(words, both)
    agreement = (words.argmax(axis=1) == both.argmax(axis=1)).mean()
    assert agreement >= 0.6, agreement  # same data, fewer features: mostly the same answers


def test_prediction_features_equal_scikit_learns_tfidf_transform(trained) -> None:
    _, _, folder, _ = trained
    model = load_model(folder / "models" / "a")
    texts = [row["text"] for row in nusax_test(50)] + ["", "zzqx", "Good FOOD, good food!"]
    ours = model.scorer.features(texts).toarray()
    reference = sp.hstack(
        [vectorizer.transform(texts) for vectorizer in model.scorer.vectorizers.values()]
    ).toarray()
    assert ours.shape == reference.shape and np.abs(ours - reference).max() < 1e-5
    assert not ours[len(texts) - 3].any() and np.allclose(np.linalg.norm(ours[-1]), np.sqrt(2))


ODD_TEXTS = [
    "",
    "   ",
    "a",
    "snake_case and__double _x_ under_",
    "Ünïcödé  ÉCOLE straße İstanbul ǅemal",
    "e\u0301te cafe\u0301 (combining accents)",
    "tabs\tand\nnewlines\r\nand\x0bvertical\x1cseparators\u2028line\u00a0nbsp",
    "digits 42 ²³ ½ 4th 1,000.50 v2.0 x86_64",
    "punct!!! good,bad;ugly... (parens) [brackets] 'quotes' \"dq\" e-mail@host.com #tag",
    "日本語のテキスト 中文 한국어 العربية עברית हिन्दी",
    "emoji 😀 good👍food ❤️",
    "nul\x00byte and\x00more",
]


def random_texts(count: int) -> list[str]:
    """Seeded random strings over letters, digits, the underscore, punctuation, whitespace of
    several kinds, accents, combining marks and scripts other than Latin."""
    alphabet = list("abcdefghij ABCDEFGHIJ 0123456789 _-.,!?'\"/()") + list(
        " \t\n\u00a0\u2009\u3000éèüßİıǅ\u0301\u0300²½日本ข\u0e31عשह\u093f😀"
    )
    rng = np.random.default_rng(0)
    return ["".join(rng.choice(alphabet, rng.integers(0, 60))) for _ in range(count)]


@pytest.mark.parametrize(
    ("analyzer", "ngrams"),
    [("word", (1, 1)), ("word", (1, 2)), ("word", (2, 3)), ("char_wb", (2, 5))],
)
def test_term_counts_equal_scikit_learns_count_vectorizer(analyzer, ngrams) -> None:
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    from stillhouse.train.recipes.linear import Tfidf

    fit_texts = [row["text"] for row in nusax_train()] + ODD_TEXTS + random_texts(300)
    texts = [row["text"] for row in nusax_test(100)] + ODD_TEXTS + random_texts(300)
    vectorizer = TfidfVectorizer(
        analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True, dtype=np.float32
    ).fit(fit_texts)
    ours = Tfidf(vectorizer).counts(texts)
    reference = CountVectorizer.transform(vectorizer, texts)
    assert ours.has_canonical_format and ours.shape == reference.shape
    assert np.array_equal(ours.indptr, reference.indptr)
    assert np.array_equal(ours.indices, reference.indices)
    assert np.array_equal(ours.data, reference.data)
    assert reference.nnz > 2 * len(texts)  # the comparison covers many terms
    assert Tfidf(vectorizer).counts([]).shape == (0, len(vectorizer.vocabulary_))
