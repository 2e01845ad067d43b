"""Benchmark: what cutting the flagged windows buys a guarded cascade (`[guard] injection = route`).

Under `route` a flagged text never reaches the LLM; the cascade's non-LLM stage answers it when
sure, else the cascade abstains. Since 2026-12-03 the stage reads the text without the windows
the detector flagged (`Detector.remainders`). This script isolates that choice on the texts it
concerns — the attacked texts the detector flags — with the student, attacks and threshold of
`bench/guard.py --part end-to-end` (same seed, same `linear` student on gold train labels, same
confidence threshold: the 20% quantile on 300 held-out train texts, same `build_attacks`), and
no LLM (flagged texts never reach it, and unflagged texts are handled alike either way).

Per dataset: of the flagged attacked texts, how many the student answers (confidence ≥ the
threshold) and, of all of them, how many it answers with the attacker's target label, with the
gold label, or abstains on — reading the whole attacked text (before) and the text without its
flagged windows (after; nothing left: abstained). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np
from _common import machine_description, table_head
from guard import ROUTED, _rows, _task_file


def measure(dataset: str, n: int, seed: int) -> dict[str, object]:
    from stillhouse.data.io import write_jsonl
    from stillhouse.evaluate.redteam import build_attacks
    from stillhouse.guard.injection import shipped_detector
    from stillhouse.task import GuardSection, load_task
    from stillhouse.train import TrainSettings, load_model, train

    folder = Path(tempfile.mkdtemp(prefix=f"guard-cut-{dataset}-"))
    task = load_task(_task_file(dataset, folder))
    off = task.model_copy(update={"guard": GuardSection(injection="off")})
    train_rows = _rows(dataset, "train")
    random.Random(seed).shuffle(train_rows)
    held_out, fitted = train_rows[:300], train_rows[300:]
    write_jsonl(folder / "train.jsonl", fitted)
    settings = TrainSettings(recipe="linear", latency_texts=5, throughput_texts=20)
    train(off, folder / "linear", settings, data=folder / "train.jsonl")
    student = load_model(folder / "linear", task=off)
    confidences = [max(p.probs.values()) for p in student.predict([r["text"] for r in held_out])]
    threshold = float(np.quantile(confidences, ROUTED))
    test = _rows(dataset, "test")
    chosen = sorted(random.Random(seed).sample(range(len(test)), min(n, len(test))))
    rows = [test[i] for i in chosen]
    attacks = build_attacks(
        [r["text"] for r in rows], [r["label"] for r in rows], task.label_names, n, seed=seed
    )
    detector = shipped_detector()
    verdicts = detector.scan([a.text for a in attacks])
    flagged = [a for a, v in zip(attacks, verdicts, strict=True) if v.injection]
    remainders = detector.remainders([a.text for a in flagged])
    outcome = {}
    for name, texts in (
        ("whole text", [a.text for a in flagged]),
        ("flagged windows cut", remainders),
    ):
        seen = [i for i, text in enumerate(texts) if text.strip()]
        predicted = student.predict([texts[i] for i in seen])
        answers = dict(zip(seen, predicted, strict=True))
        counts = {"answered": 0, "target": 0, "gold": 0, "abstained": 0, "nothing left": 0}
        for i, attack in enumerate(flagged):
            prediction = answers.get(i)
            if prediction is None:
                counts["nothing left"] += 1
                counts["abstained"] += 1
            elif max(prediction.probs.values()) < threshold:
                counts["abstained"] += 1
            else:
                counts["answered"] += 1
                counts["target"] += prediction.answer == attack.target
                counts["gold"] += prediction.answer == rows[attack.item]["label"]
        outcome[name] = counts
    return {"dataset": dataset, "attacks": len(attacks), "flagged": len(flagged), **outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", type=int, default=200)
    parser.add_argument("--datasets", default="nusax,banking77")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"machine: {machine_description()}\n")
    print(
        *table_head(
            "dataset",
            "flagged / attacked",
            "what the student reads",
            "answered",
            "with the target",
            "with the gold label",
            "abstained (nothing left)",
        ),
        sep="\n",
    )
    for dataset in args.datasets.split(","):
        run = measure(dataset, args.attacks, args.seed)
        for name in ("whole text", "flagged windows cut"):
            c = run[name]
            print(
                f"| {dataset} | {run['flagged']} / {run['attacks']} | {name} | {c['answered']} | "
                f"{c['target']} | {c['gold']} | {c['abstained']} ({c['nothing left']}) |"
            )


if __name__ == "__main__":
    main()
