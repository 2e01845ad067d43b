"""Benchmark: the LLM labeller on many-label tasks with label shortlists and retrieved
demonstrations, against the retriever alone (run by ``bench/annotate.py --shortlists``).

Datasets: banking77 (77 intents) and CLINC150 (150 in-scope intents, ../shared/datasets/clinc150,
CC BY 3.0). Per dataset: ``--limit`` shuffled test texts (seed 0) and seeds of the first N train
texts per label after the seed-0 shuffle (N in ``--seeds``). Systems (``--systems``, a comma list
of names; ``all`` for the full grid):

- ``retriever`` at each seed size: label-description cosine (seed 0) or kNN over the seed plus
  descriptions; its softmax probabilities (temperature fitted by leave-one-out on the seed).
- ``llm-all``: today's label scoring over every label (seed > 0: with the 4 nearest seed texts).
- ``llm-kK``: shortlists of K labels, no demonstrations; ``llm-kK-demos``: with 4 demonstrations
  drawn to cover the top three shortlisted labels.
- ``generate``: generate-then-parse with the same 4 nearest seed texts (the speed reference).

Each (dataset, system, seed) result is cached under the bench cache as JSON, and the workspace
store is kept, so a killed run resumes where it stopped. Reports accuracy and macro-F1 (95%
bootstrap intervals), ECE, the shortlist's measured coverage beside its estimate, texts/s, the
share of invalid outputs, and the paired accuracy difference to the retriever alone at the same
seed (bootstrap interval over the same resamples).
"""

from __future__ import annotations

import datetime
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    BANKING77,
    DATASETS,
    bench_cache_dir,
    classification_scores,
    example_task_file,
    first_per_label,
    machine_description,
    read_pairs,
    shuffled,
    table_head,
)

from stillhouse.annotate import annotate
from stillhouse.data.store import Store
from stillhouse.evaluate.bootstrap import bootstrap_interval, resample_indices
from stillhouse.llm.backend import BackendSettings, open_backend
from stillhouse.task import load_task

CLINC150 = DATASETS / "clinc150" / "data_full.json"
SHOTS = 4
REDUCED_SYSTEMS = "retriever,llm-k10-demos,llm-k10,generate,llm-all"
FULL_SYSTEMS = (
    "retriever,llm-all,llm-k5,llm-k5-demos,llm-k10,llm-k10-demos,llm-k20,llm-k20-demos,generate"
)

Rows = list[tuple[str, str]]


def load_dataset(name: str) -> tuple[dict[str, str], Rows, Rows]:
    """(label -> description, train rows, test rows); descriptions as the example tasks have
    them: the label name re-cased."""
    if name == "banking77":
        from stillhouse.task import load_task as _load

        labels = dict(_load(example_task_file("banking77")).labels)
        return (
            labels,
            read_pairs(BANKING77 / "train.csv", "category"),
            read_pairs(BANKING77 / "test.csv", "category"),
        )
    if name == "clinc150":
        if not CLINC150.is_file():
            raise SystemExit(
                f"{CLINC150} is missing: copy data/data_full.json of clinc/oos-eval (CC BY 3.0)"
            )
        data = json.loads(CLINC150.read_text())
        names = sorted({label for _, label in data["train"]})
        labels = {n: n.replace("_", " ").capitalize() + "." for n in names}
        return labels, [tuple(r) for r in data["train"]], [tuple(r) for r in data["test"]]
    raise SystemExit(f"unknown dataset {name}; known: banking77, clinc150")


def write_task(folder: Path, name: str, labels: dict[str, str], cover: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f'name = "{name}"',
        'kind = "classify"',
        'instructions = "Classify the customer message by its intent."',
        "",
        "[labels]",
        *(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in labels.items()),
        "",
        "[input]",
        'text = "text"',
        'label = "label"',
        "",
        # the labeller is measured here, not the injection screen (which routes a few benign
        # CLINC150 questions, e.g. "can you tell me your age", to review under its default)
        "[guard]",
        'injection = "off"',
        "",
        "[llm]",
        f"shortlist_cover = {cover}",
        "",
    ]
    (folder / "task.toml").write_text("\n".join(lines))
    return folder / "task.toml"


def parse_system(system: str) -> dict[str, Any]:
    """``llm-k10-demos`` -> {kind: llm, k: 10, shots: 4}; ``llm-all`` -> k 0 (every label)."""
    if system in ("retriever", "generate"):
        return {"kind": system, "k": 0}
    parts = system.split("-")
    k = 0 if parts[1] == "all" else int(parts[1][1:])
    # -demos: demonstrations covering the top 3 shortlisted labels; -nearest: the 4 nearest
    return {
        "kind": "llm",
        "k": k,
        "demos": parts[-1] in ("demos", "nearest"),
        "cover": 0 if parts[-1] == "nearest" else 3,
    }


def run_llm(
    backend: Any,
    workdir: Path,
    dataset: str,
    labels: dict[str, str],
    seed_rows: Rows,
    test_rows: Rows,
    spec: dict[str, Any],
    model: str,
) -> dict[str, Any]:
    """Annotate the test texts (the seed rows, labelled, ride along in the input file)."""
    task = load_task(write_task(workdir, dataset, labels, spec.get("cover", 3)))
    data = workdir / "input.jsonl"
    with data.open("w") as handle:
        for i, (text, label) in enumerate(seed_rows):
            handle.write(json.dumps({"id": f"seed-{i}", "text": text, "label": label}) + "\n")
        for i, (text, _) in enumerate(test_rows):
            handle.write(json.dumps({"id": f"test-{i}", "text": text}) + "\n")
    if spec["kind"] == "generate":
        method, shots, shortlist = "generate", SHOTS if seed_rows else 0, 0
    else:
        shots = SHOTS if seed_rows and (spec["demos"] or spec["k"] == 0) else 0
        method, shortlist = "score", spec["k"]
    before = backend.tokens_processed
    summary = annotate(
        task,
        data,
        model=model,
        method=method,
        shots=shots,
        unlabelled_only=True,
        backend=backend,
        shortlist=shortlist,
        progress=lambda done, total: (
            print(f"  {done}/{total}", flush=True) if done % 48 == 0 else None
        ),
    )
    with Store(task.store_path) as store:
        mine = {a.example_id: a for a in store.annotations(task.kind, summary.annotator)}
    names = list(labels)
    probs, shortlists, estimates, invalid = [], [], [], 0
    for i, (_, gold) in enumerate(test_rows):
        annotation = mine[f"test-{i}"]
        row = np.zeros(len(names))
        if annotation.probs:
            row = np.array([annotation.probs[n] for n in names])
        elif annotation.info.get("invalid"):
            invalid += 1
            row[(names.index(gold) + 1) % len(names)] = 1.0  # counted wrong, whatever it is
        else:
            row[names.index(str(annotation.answer))] = 1.0
        probs.append(row.tolist())
        shortlists.append(annotation.info.get("shortlist"))
        estimates.append(annotation.info.get("shortlist_coverage"))
    # texts/s over every run of this annotator in the workspace (a resumed system's earlier
    # runs count too): texts annotated / seconds spent
    done, seconds = 0, 0.0
    with sqlite3.connect(task.store_path) as db:
        for (stats,) in db.execute("SELECT stats FROM runs WHERE command = 'annotate'"):
            row = json.loads(stats or "{}")
            if row.get("annotator") == summary.annotator:
                done += row.get("annotated", 0)
                seconds += row.get("seconds", 0.0)
    return {
        "probs": probs,
        "shortlists": shortlists,
        "estimates": estimates,
        "invalid": invalid,
        "texts_per_s": done / seconds if seconds > 0 else None,
        "annotated_now": summary.annotated,
        "new_tokens": backend.tokens_processed - before,
        "has_probs": method == "score",
        "shots": shots,
        "annotator": summary.annotator,
    }


def run_retriever(
    labels: dict[str, str], seed_rows: Rows, test_rows: Rows, dataset: str
) -> dict[str, Any]:
    from stillhouse.data.records import Example
    from stillhouse.llm.retrieval import LabelRetriever

    task = load_task(
        write_task(bench_cache_dir() / "shortlists" / "retriever-task", dataset, labels)
    )
    seed = [Example(f"seed-{i}", t, gold=g) for i, (t, g) in enumerate(seed_rows)]
    started = time.perf_counter()
    retriever = LabelRetriever(task, seed)
    vectors = retriever.embed_texts([t for t, _ in test_rows])
    probs = retriever.probabilities(retriever.scores(vectors))
    seconds = time.perf_counter() - started
    loo = retriever.leave_one_out
    return {
        "probs": probs.tolist(),
        "texts_per_s": len(test_rows) / seconds,
        "invalid": 0,
        "has_probs": True,
        "temperature": retriever.temperature,
        "loo_coverage": {k: loo.coverage(k) for k in (5, 10, 20)} if loo else None,
        "ranks": np.argsort(-probs, axis=1, kind="stable")[:, :20].tolist(),
    }


def run(
    datasets: list[str], systems: list[str], seeds: list[int], limit: int, model: str, threads: int
) -> list[dict[str, Any]]:
    from stillhouse.llm.fewshot import embed

    embed(["warm the sentence encoder up before anything is timed"])
    cache = bench_cache_dir() / "shortlists"
    backend = None
    results = []
    for system in systems:
        spec = parse_system(system)
        for dataset in datasets:
            labels, train, test = load_dataset(dataset)
            test_rows = shuffled(test)[:limit]
            for seed_size in seeds:
                if spec["kind"] == "generate" and seed_size == 0:
                    continue
                if spec["kind"] == "llm" and spec.get("demos") and seed_size == 0:
                    continue  # demonstrations need a seed
                seed_rows = first_per_label(shuffled(train), seed_size, lambda r: r[1])
                name = f"{dataset}-{system}-seed{seed_size}-n{limit}-{model}"
                path = cache / f"{name}.json"
                larger = _larger_result(cache, dataset, system, seed_size, limit, model)
                if path.is_file():
                    result = json.loads(path.read_text())
                elif larger is not None:
                    result = larger  # the test texts are a prefix of the same shuffle
                else:
                    print(f"{name} ...", flush=True)
                    if spec["kind"] == "retriever":
                        result = run_retriever(labels, seed_rows, test_rows, dataset)
                    else:
                        if backend is None:
                            backend = open_backend(
                                model, BackendSettings(threads=threads, n_ctx=4096)
                            )
                        result = run_llm(
                            backend,
                            # one workspace per system whatever the limit: a larger run resumes
                            cache / "work" / f"{dataset}-{system}-seed{seed_size}-{model}",
                            dataset,
                            labels,
                            seed_rows,
                            test_rows,
                            spec,
                            model,
                        )
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(result))
                result.update(
                    dataset=dataset,
                    system=system,
                    seed=seed_size,
                    gold=[list(labels).index(g) for _, g in test_rows],
                    labels=list(labels),
                )
                results.append(result)
                print(json.dumps(summarise(result, results)), flush=True)
    if backend is not None:
        backend.close()
    return results


def _larger_result(
    cache: Path, dataset: str, system: str, seed: int, limit: int, model: str
) -> dict[str, Any] | None:
    """A cached result of the same system on more test texts, cut to the first ``limit``."""
    for path in sorted(cache.glob(f"{dataset}-{system}-seed{seed}-n*-{model}.json")):
        n = int(path.name.split(f"-seed{seed}-n")[1].split("-")[0])
        if n > limit:
            result = json.loads(path.read_text())
            for key in ("probs", "shortlists", "estimates", "ranks"):
                if result.get(key):
                    result[key] = result[key][:limit]
            return result
    return None


def summarise(result: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    probs = np.array(result["probs"])
    gold = np.array(result["gold"])
    scores = classification_scores(probs, gold)
    indices = resample_indices(len(gold), 1000, 0)
    out: dict[str, Any] = {
        "dataset": result["dataset"],
        "system": result["system"],
        "seed": result["seed"],
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "ece": scores["ece"] if result["has_probs"] else None,
        "texts_per_s": result["texts_per_s"],
        "invalid": result["invalid"] / len(gold),
        "tokens": result["new_tokens"] / result["annotated_now"]
        if result.get("annotated_now") and result.get("has_probs")
        else None,
    }
    base = next(
        (
            r
            for r in results
            if r["system"] == "retriever"
            and r["dataset"] == result["dataset"]
            and r["seed"] == result["seed"]
        ),
        None,
    )
    if base is not None and result["system"] != "retriever":
        base_correct = np.array(base["probs"]).argmax(axis=1) == gold
        out["vs_retriever"] = bootstrap_interval(
            scores["correct"].astype(float) - base_correct.astype(float), indices
        )
    shortlists = result.get("shortlists") or []
    if shortlists and shortlists[0]:
        labels = result["labels"]
        out["coverage"] = float(
            np.mean([labels[g] in s for g, s in zip(gold, shortlists, strict=True)])
        )
        out["coverage_estimate"] = float(np.mean(result["estimates"]))
    return out


def render(rows: list[dict[str, Any]], command: str, limit: int) -> str:
    lines = [
        "## annotate: label shortlists and retrieved demonstrations on many-label tasks "
        f"({datetime.date.today()})",
        "",
        f"Machine: {machine_description()}. Command: `{command}`.",
        f"{limit} shuffled test texts per dataset (seed 0); seeds: the first N train texts per "
        "label after the seed-0 shuffle; model qwen2.5-0.5b, label scoring at tolerance 0.05.",
        "",
        *table_head(
            "dataset",
            "seed/label",
            "system",
            "accuracy (95% CI)",
            "macro-F1 (95% CI)",
            "ECE",
            "Δ accuracy vs retriever (95% CI)",
            "shortlist coverage (estimate)",
            "texts/s",
            "decoded tokens/text",
            "invalid",
        ),
    ]
    for row in rows:
        a, f = row["accuracy"], row["macro_f1"]
        delta = row.get("vs_retriever")
        cov = (
            f"{row['coverage']:.3f} ({row['coverage_estimate']:.3f})" if "coverage" in row else "–"
        )
        lines.append(
            f"| {row['dataset']} | {row['seed']} | {row['system']} | {a.estimate:.3f} "
            f"({a.low:.3f}–{a.high:.3f}) | {f.estimate:.3f} ({f.low:.3f}–{f.high:.3f}) | "
            + (f"{row['ece']:.3f}" if row["ece"] is not None else "–")
            + " | "
            + (f"{delta.estimate:+.3f} ({delta.low:+.3f}–{delta.high:+.3f})" if delta else "–")
            + f" | {cov} | "
            + (f"{row['texts_per_s']:.2f}" if row["texts_per_s"] else "–")
            + " | "
            + (f"{row['tokens']:.0f}" if row.get("tokens") else "–")
            + f" | {row['invalid']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="banking77,clinc150")
    parser.add_argument(
        "--systems", default=REDUCED_SYSTEMS, help=f"comma list, or all ({FULL_SYSTEMS})"
    )
    parser.add_argument("--seeds", default="0,10", help="seed texts per label (full: 0,3,10)")
    parser.add_argument("--limit", type=int, default=200, help="test texts per dataset")
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", help="write the markdown table here (default: print only)")
    args = parser.parse_args(argv)
    systems = (FULL_SYSTEMS if args.systems == "all" else args.systems).split(",")
    results = run(
        args.datasets.split(","),
        systems,
        [int(s) for s in args.seeds.split(",")],
        args.limit,
        args.model,
        args.threads,
    )
    rows = [summarise(r, results) for r in results]
    order = {s: i for i, s in enumerate(systems)}
    rows.sort(key=lambda r: (r["dataset"], r["seed"], order[r["system"]]))
    given = sys.argv[1:] if argv is None else argv
    table = render(rows, "python bench/annotate.py --shortlists " + " ".join(given), args.limit)
    print(table)
    if args.out:
        Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
