"""Benchmark: span confidences of the spacy-ner recipe — what beam decoding costs, and which
scaling calibrates the beam marginals.

Per dataset, one spacy-ner model trained by ``stillhouse.train`` (seed 0, defaults), then on
texts it never saw:

- strict F1 and throughput (texts/s, best of 3, batch 64) of greedy decoding (``nlp.pipe``, what
  the recipe did before) and of the beam decoding it now uses (``span_confidence.beam_spans``);
- the training run's held-out strict F1, share of right predicted spans and ECE before and
  after its Platt scaling (its card);
- ECE (10 equal-mass bins) over the predicted spans of the raw beam marginal and of the Platt
  scaling fitted on the training run's held-out split (the card's, as shipped);
- on three random splits of the test texts (a third fits, two thirds are scored), the scalings
  one could fit: a temperature on the beam's parse scores (fitted by the NLL of every candidate
  span in the beam), a temperature on the marginal's log-odds (slope only), and Platt scaling
  (slope and bias; the recipe's choice).

Datasets: presidio-research synthetic PII (train texts 0–399, test 1000–1399, 4 types) and
wnut17 tweets (train sentences 0–1499, test 2000–3393, 6 types).
Run alone: `OMP_NUM_THREADS=2 .venv/bin/python bench/span_confidence.py`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from _common import add_test_helpers_to_path, fastest_seconds, table_head
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit, softmax

add_test_helpers_to_path()
from structured_data import (  # noqa: E402
    WNUT17_TYPES,
    presidio_spans,
    task_text,
    wnut17_rows,
)
from train_data import write_task  # noqa: E402

from stillhouse.data.io import write_jsonl  # noqa: E402
from stillhouse.evaluate.accuracy import span_metrics  # noqa: E402
from stillhouse.evaluate.calibration import (  # noqa: E402
    expected_calibration_error,
    fit_temperature,
)
from stillhouse.task import load_task  # noqa: E402
from stillhouse.train import TrainSettings, load_model, train  # noqa: E402
from stillhouse.train.recipes.parts.span_confidence import (  # noqa: E402
    BEAM_DENSITY,
    BEAM_WIDTH,
    CLIP,
    SpanCalibration,
    beam_spans,
    calibrated,
    fit_platt,
)

PII = ("PERSON", "STREET_ADDRESS", "GPE", "ORGANIZATION")
SPLITS = 3


def ece(confidence: np.ndarray, right: np.ndarray) -> float:
    return expected_calibration_error(confidence, right, 10, scheme="mass")


def best_rate(call, texts: list[str]) -> float:
    """Texts per second of one ``call(texts)`` (all texts at once): the fastest of 3."""
    return len(texts) / fastest_seconds(lambda: call(texts), 3)


def beam_items(nlp, texts: list[str], gold: list[set], types: set[str]) -> list[dict]:
    """Per text: parse scores, the entities of each parse, the best parse's spans (token
    offsets) and which spans are right, for the temperature on parse scores."""
    ner = nlp.get_pipe("ner")
    items = []
    docs = [nlp.make_doc(text) for text in texts]
    for start in range(0, len(docs), 64):
        batch = docs[start : start + 64]
        beams = ner.beam_parse(batch, beam_width=BEAM_WIDTH, beam_density=BEAM_DENSITY)
        ner.set_annotations(batch, beams)
        for doc, beam, truth in zip(batch, beams, gold[start : start + 64], strict=True):
            parses = ner.moves.get_beam_parses(beam)
            scores = np.array(beam.scores[: len(parses)])

            def char(entity: tuple[int, int, str], doc=doc) -> tuple[int, int, str]:
                span = doc[entity[0] : entity[1]]
                return (span.start_char, span.end_char, entity[2])

            kept = [[e for e in parse if e[2] in types] for _, parse in parses]
            candidates = sorted({e for parse in kept for e in parse})
            best = [(e.start, e.end, e.label_) for e in doc.ents if e.label_ in types]
            items.append(
                {
                    "scores": scores,
                    "parses": [set(parse) for parse in kept],
                    "candidates": candidates,
                    "candidate_right": [char(e) in truth for e in candidates],
                    "best": best,
                    "best_right": [char(e) in truth for e in best],
                }
            )
    return items


def parse_marginals(item: dict, temperature: float) -> dict:
    out: dict = {}
    if len(item["scores"]):
        for p, parse in zip(softmax(item["scores"] / temperature), item["parses"], strict=True):
            for entity in parse:
                out[entity] = out.get(entity, 0.0) + p
    return out


def best_confidence(items: list[dict], chosen, temperature: float) -> np.ndarray:
    return np.array(
        [
            min(1.0, parse_marginals(items[i], temperature).get(e, 0.0))
            for i in chosen
            for e in items[i]["best"]
        ]
    )


def fit_parse_temperature(items: list[dict], chosen) -> float:
    right = np.array([r for i in chosen for r in items[i]["candidate_right"]], dtype=float)

    def nll(log_t: float) -> float:
        p = np.array(
            [
                parse_marginals(items[i], np.exp(log_t))[e]
                for i in chosen
                for e in items[i]["candidates"]
            ]
        )
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return float(-(right * np.log(p) + (1 - right) * np.log(1 - p)).mean())

    found = minimize_scalar(nll, bounds=(np.log(0.01), np.log(100)), method="bounded")
    return float(np.exp(found.x))


def fit_log_odds_temperature(confidence: np.ndarray, right: np.ndarray) -> float:
    """sigmoid(z / T) is softmax([0, z] / T)[1]: the project's temperature fit on two columns."""
    z = logit(np.clip(confidence, CLIP, 1 - CLIP))
    return fit_temperature(np.column_stack([np.zeros_like(z), z]), right.astype(np.int64))


def run(
    name: str, types: tuple[str, ...], train_rows: list[dict], test_rows: list[dict]
) -> tuple[str, list[str]]:
    """The dataset's row of the first table and its split rows of the second."""
    folder = Path(tempfile.mkdtemp(prefix="stillhouse-spans-"))
    task = load_task(write_task(folder / "task", task_text(name, "spans", "spans", types)))
    write_jsonl(folder / "train.jsonl", train_rows)
    settings = TrainSettings(recipe="spacy-ner", latency_texts=20, throughput_texts=100)
    card = train(task, folder / "model", settings, data=folder / "train.jsonl").card
    scaling = card["calibration"]
    f1 = card["held_out"]["micro_f1"]
    held = (
        f"{f1['estimate']:.3f} ({f1['low']:.2f}–{f1['high']:.2f}), "
        f"{scaling['right'] / max(scaling['spans'], 1):.0%} of {scaling['spans']} spans right, "
        f"ECE {scaling['ece_before']:.3f} → {scaling['ece_after']:.3f}"
    )
    model = load_model(folder / "model", task=task)
    nlp, wanted = model.nlp, set(types)
    texts = [row["text"] for row in test_rows]
    gold = [{(s["start"], s["end"], s["label"]) for s in row["spans"]} for row in test_rows]

    def greedy(batch: list[str]) -> list[list[tuple[int, int, str]]]:
        return [
            [(e.start_char, e.end_char, e.label_) for e in doc.ents if e.label_ in wanted]
            for doc in nlp.pipe(batch, batch_size=64)
        ]

    raw = beam_spans(nlp, texts, wanted)
    beam = [[(s.start, s.end, s.label) for s in answer] for answer in raw]
    truth = [sorted(g) for g in gold]
    f1_greedy = span_metrics(truth, greedy(texts))["strict"]["f1"]
    f1_beam = span_metrics(truth, beam)["strict"]["f1"]
    rate_greedy = best_rate(greedy, texts)
    rate_beam = best_rate(lambda batch: beam_spans(nlp, batch, wanted), texts)
    right = np.array([e in g for answer, g in zip(beam, gold, strict=True) for e in answer])
    marginal = np.array([s.score for answer in raw for s in answer])
    shipped = np.array([s.score for answer in calibrated(raw, model.calibration) for s in answer])
    summary = (
        f"| {name} | {held} | {len(texts)} texts, {right.size} spans, {right.mean():.0%} right | "
        f"{f1_greedy:.3f} / {f1_beam:.3f} | {rate_greedy:,.0f} / {rate_beam:,.0f} "
        f"({rate_beam / rate_greedy:.2f}×) | {ece(marginal, right):.3f} | "
        f"{ece(shipped, right):.3f} |"
    )
    items = beam_items(nlp, texts, gold, wanted)
    rng = np.random.default_rng(0)
    splits = []
    for split in range(SPLITS):
        order = rng.permutation(len(items))
        fit, held = order[: len(items) // 3], order[len(items) // 3 :]
        held_right = np.array([r for i in held for r in items[i]["best_right"]], dtype=float)
        fit_right = np.array([r for i in fit for r in items[i]["best_right"]], dtype=bool)
        before = best_confidence(items, held, 1.0)
        t_parse = fit_parse_temperature(items, fit)
        by_parse = best_confidence(items, held, t_parse)
        fit_conf = best_confidence(items, fit, 1.0)
        t_odds = fit_log_odds_temperature(fit_conf, fit_right)
        by_odds = expit(logit(np.clip(before, CLIP, 1 - CLIP)) / t_odds)
        platt = fit_platt(fit_conf, fit_right) or SpanCalibration()
        splits.append(
            f"| {name} split {split + 1} | {fit_right.size} / {held_right.size} | "
            f"{ece(before, held_right):.3f} | {ece(by_parse, held_right):.3f} (T {t_parse:.2f}) | "
            f"{ece(by_odds, held_right):.3f} (T {t_odds:.2f}) | "
            f"{ece(platt.apply(before), held_right):.3f} "
            f"(slope {platt.slope:.2f}, bias {platt.bias:.2f}) |"
        )
    return summary, splits


def main() -> None:
    wnut = wnut17_rows(3394)
    datasets = [
        ("presidio", PII, presidio_spans(0, 400, PII), presidio_spans(1000, 1400, PII)),
        ("wnut17", WNUT17_TYPES, wnut[:1500], wnut[2000:]),
    ]
    results = [run(*dataset) for dataset in datasets]
    print(
        *table_head(
            "dataset",
            "held out (card): strict F1 (95% CI), spans right, ECE before → after",
            "test",
            "strict F1 greedy / beam",
            "texts/s greedy / beam",
            "ECE beam marginal",
            "ECE Platt (card's fit)",
        ),
        sep="\n",
    )
    for summary, _ in results:
        print(summary)
    print()
    print(
        *table_head(
            "split",
            "spans fit / scored",
            "ECE marginal",
            "temperature on parse scores",
            "temperature on log-odds",
            "Platt",
        ),
        sep="\n",
    )
    for _, splits in results:
        print("\n".join(splits))


if __name__ == "__main__":
    main()
