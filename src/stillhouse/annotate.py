"""annotate: the LLM labels every text of a data file, stored in the workspace, cached, resumable.

Work goes in batches; each batch's annotations and cache entries are committed in one
transaction. A run killed at any point keeps every committed batch, and the next run with the
same task, model and prompt skips the examples that are already annotated.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse.data.io import data_fingerprint, read_examples
from stillhouse.data.records import Annotation, Example, answer_from_json, answer_to_json
from stillhouse.data.store import PRIVACY_QUEUE, ReviewItem, Store
from stillhouse.errors import Errors, fail
from stillhouse.evaluate.intervals import wilson_interval
from stillhouse.guard.privacy import BLOCKED_REASON, PrivacySettings
from stillhouse.llm.answer import METHODS, LLMAnswer, Method, answer_many, content_free_probs
from stillhouse.llm.backend import Backend, BackendSettings, open_backend
from stillhouse.llm.prompts import PROMPT_VERSION, ChatPrompt, build_prompt, prompt_fingerprint
from stillhouse.output_guard import Output, check_outputs
from stillhouse.provenance import json_sha256
from stillhouse.task import Task

# progress(done, total) after every batch
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AnnotateSummary:
    """What an annotate run did; ``accuracy`` is against gold labels in the input, if any."""

    run_id: str
    annotator: str
    model: str
    method: str
    examples: int
    annotated: int  # newly annotated in this run
    resumed: int  # already annotated by this annotator before the run
    cache_hits: int
    seconds: float
    truncated: int
    invalid: int  # generate method: replies that matched no label
    dropped_spans: int
    probabilities: bool  # whether per-label probabilities are available
    n_gold: int
    accuracy: float | None
    accuracy_interval: tuple[float, float] | None
    label_counts: dict[str, int]
    mean_confidence: float | None
    skipped_rows: list[str] = field(default_factory=list)
    store: str = ""
    # [privacy] on a remote backend: mode and counts per entity type (never values); the texts
    # it blocked went to the review queue ``privacy`` and have no annotation.
    privacy: dict[str, Any] | None = None
    privacy_blocked: int = 0

    @property
    def examples_per_second(self) -> float:
        return self.annotated / self.seconds if self.seconds > 0 else 0.0

    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.annotated if self.annotated else 0.0


def backend_settings(task: Task, **overrides: Any) -> BackendSettings:
    llm = task.llm
    values = {
        "n_ctx": llm.n_ctx,
        "threads": llm.threads,
        "seed": llm.seed,
        "max_new_tokens": llm.max_new_tokens,
        "concurrency": llm.concurrency,
        "timeout_s": llm.timeout_s,
        "api_key_env": llm.api_key_env,
        "score_tolerance": llm.score_tolerance,
        "privacy": PrivacySettings(
            task.privacy.remote, task.privacy.entities, task.privacy.score_threshold
        ),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return BackendSettings(**values)


def annotator_id(model: str, task: Task, method: str, shots: int) -> str:
    """``llm:<model>@<prompt hash>``; the hash covers the prompt and the method."""
    fingerprint = prompt_fingerprint(task, shots)
    if method != "score":
        fingerprint = json_sha256([fingerprint, method])[:8]
    return f"llm:{model}@{fingerprint}"


def _cache_key(backend: Backend, prompt: ChatPrompt, task: Task, method: str) -> str:
    return json_sha256(
        {
            "backend": backend.name,
            "model": backend.model_sha256,
            "prompt": prompt.key(),
            "labels": task.label_names,
            "kind": task.kind,
            "method": method,
            "calibration": task.llm.contextual_calibration,
            "seed": task.llm.seed,
            "max_new_tokens": task.llm.max_new_tokens,
            "score_tolerance": getattr(backend, "tolerance", None),
            "version": PROMPT_VERSION,
            # what was sent depends on the privacy mode (absent for in-process backends)
            **({"privacy": privacy.mode} if (privacy := _privacy(backend)) else {}),
        }
    )


def annotate(
    task: Task,
    input_path: str | Path,
    *,
    model: str | None = None,
    limit: int | None = None,
    method: Method = "score",
    shots: int | None = None,
    unlabelled_only: bool = False,
    use_cache: bool = True,
    skip_invalid: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
    backend: Backend | None = None,
) -> AnnotateSummary:
    """Annotate the texts of ``input_path`` with the LLM; results go to the task's store.

    ``model`` overrides ``[llm].model``; ``limit`` keeps the first N rows; ``shots`` overrides
    ``[llm].shots`` (k nearest labelled examples from the same file). ``unlabelled_only`` asks
    the LLM only about rows without a gold label (the labelled ones are still stored, and serve
    as shots); the summary then counts those rows only. Pass an open ``backend`` to reuse a
    loaded model across calls.
    """
    if method not in METHODS:
        raise fail(Errors.E403, what="method", value=method, choices=", ".join(METHODS))
    report = read_examples(input_path, task, skip_invalid=skip_invalid)
    examples = report.examples[:limit] if limit is not None else report.examples
    shots = task.llm.shots if shots is None else shots
    model_spec = model or task.llm.model
    if shots and not any(e.gold is not None for e in report.examples):
        raise fail(Errors.E402, shots=shots, path=input_path)
    # the store is this command's output: writable, with room, before the model loads
    check_outputs([Output("the store of --task", task.store_path)], [])
    with Store.for_task(task, create=True) as store:
        # The store's task and the texts under known ids are checked before the model loads.
        store.check_examples(examples)
        own_backend = backend is None
        backend = backend or open_backend(model_spec, backend_settings(task, threads=threads))
        try:
            if method == "score" and not backend.can_score and task.kind != "spans":
                method = "constrained"  # a remote server gives no label likelihoods
            annotator = annotator_id(model_spec, task, method, shots)
            return _run(
                task,
                store,
                backend,
                examples,
                [e for e in examples if e.gold is None] if unlabelled_only else examples,
                annotator,
                method,
                shots,
                use_cache,
                progress,
                report.skipped,
                model_spec,
                data_fingerprint(examples),
            )
        finally:
            if own_backend:
                backend.close()


def _run(
    task: Task,
    store: Store,
    backend: Backend,
    examples: Sequence[Example],
    targets: Sequence[Example],
    annotator: str,
    method: Method,
    shots: int,
    use_cache: bool,
    progress: Progress | None,
    skipped: list[str],
    model_spec: str,
    data_hash: str,
) -> AnnotateSummary:
    store.add_examples(examples, task.kind)
    gold = [Annotation(e.id, "gold", e.gold) for e in examples if e.gold is not None]
    if gold:
        store.add_annotations(gold, task.kind)
    done_before = store.annotated_ids(annotator)
    todo = [e for e in targets if e.id not in done_before]
    run_id = store.start_run(
        "annotate",
        task_hash=task.fingerprint(),
        data_hash=data_hash,
        model=model_spec,
        model_sha256=backend.model_sha256,
        seed=task.llm.seed,
    )
    started = time.perf_counter()
    hits = truncated = 0
    blocked: list[ReviewItem] = []
    blocked_count = 0
    # Whatever ends the run, its row says how: finished, interrupted (Ctrl-C) or failed; a run
    # killed outright is marked interrupted by the next start_run.
    status = "failed"
    try:
        selector = None
        if shots:
            from stillhouse.llm.fewshot import NeighbourSelector

            selector = NeighbourSelector(examples, shots)
        prior = None
        if task.kind == "classify" and method == "score" and task.llm.contextual_calibration:
            prior = content_free_probs(backend, task)
        for start in range(0, len(todo), task.llm.batch_size):
            batch = todo[start : start + task.llm.batch_size]
            neighbours = selector.select(batch) if selector else [[] for _ in batch]
            prompts, texts, cut_flags = [], [], []
            for example, near in zip(batch, neighbours, strict=True):
                text, n_tokens = backend.truncate(example.text, task.llm.max_text_tokens)
                cut_flags.append(n_tokens if len(text) < len(example.text) else None)
                prompts.append(build_prompt(task, text, near))
                texts.append(text)
            keys = [_cache_key(backend, p, task, method) for p in prompts]
            cached = store.cache_get_many(keys) if use_cache else {}
            missing = [i for i, key in enumerate(keys) if key not in cached]
            computed = dict(
                zip(
                    missing,
                    answer_many(
                        backend,
                        task,
                        [prompts[i] for i in missing],
                        [texts[i] for i in missing],
                        method,
                        prior,
                    ),
                    strict=True,
                )
            )
            annotations, fresh = [], []
            for position, (example, key, cut) in enumerate(
                zip(batch, keys, cut_flags, strict=True)
            ):
                if key in cached:
                    hits += 1
                    value = cached[key]
                    result = LLMAnswer(
                        None
                        if value["answer"] is None
                        else answer_from_json(value["answer"], task.kind),
                        value["probs"],
                        value["info"],
                    )
                else:
                    result = computed[position]
                    if result.info.get("privacy_blocked"):
                        # not sent, so no answer: a person looks at it instead
                        blocked.append(_blocked_item(example.id, result.info["pii"]))
                        continue
                    fresh.append(
                        (
                            key,
                            {
                                "answer": None
                                if result.answer is None
                                else answer_to_json(result.answer, task.kind),
                                "probs": result.probs,
                                "info": result.info,
                            },
                        )
                    )
                info = dict(result.info)
                if cut is not None:
                    truncated += 1
                    info["truncated"] = {
                        "kept_tokens": task.llm.max_text_tokens,
                        "original_tokens": cut,
                    }
                if result.answer is None:
                    info["invalid"] = True
                annotations.append(
                    Annotation(
                        example.id,
                        annotator,
                        result.answer if result.answer is not None else "",
                        result.probs,
                        info,
                        time.time(),
                    )
                )
            store.add_annotations(annotations, task.kind, run_id=run_id, cache=fresh)
            if blocked:
                store.add_to_review_queue(PRIVACY_QUEUE, blocked)
                blocked_count += len(blocked)
                blocked = []
            if progress:
                progress(start + len(batch), len(todo))
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        try:
            summary = _summarise(
                task,
                store,
                targets,
                annotator,
                method,
                model_spec,
                run_id,
                len(todo) - blocked_count,
                len(targets) - len(todo),
                hits,
                time.perf_counter() - started,
                truncated,
                skipped,
                backend,
            )
            privacy = getattr(backend, "privacy", None)
            if privacy is not None:
                summary = replace(summary, privacy=privacy.record(), privacy_blocked=blocked_count)
            store.finish_run(
                run_id, status, {k: v for k, v in summary.__dict__.items() if k != "skipped_rows"}
            )
        except Exception:
            if status == "finished":
                raise
            # The store may be what failed: the error that ended the run is the one to show.
    return summary


def _summarise(
    task: Task,
    store: Store,
    examples: Sequence[Example],
    annotator: str,
    method: str,
    model_spec: str,
    run_id: str,
    annotated: int,
    resumed: int,
    hits: int,
    seconds: float,
    truncated: int,
    skipped: list[str],
    backend: Backend,
) -> AnnotateSummary:
    ids = {e.id for e in examples}
    mine = {a.example_id: a for a in store.annotations(task.kind, annotator) if a.example_id in ids}
    counts: Counter[str] = Counter()
    invalid = dropped = correct = n_gold = 0
    confidences = []
    for example in examples:
        annotation = mine.get(example.id)
        if annotation is None:
            continue
        if annotation.info.get("invalid"):
            invalid += 1
        dropped += int(annotation.info.get("dropped_spans", 0))
        if task.kind == "classify" and not annotation.info.get("invalid"):
            counts[str(annotation.answer)] += 1
        elif task.kind == "multilabel":
            counts.update(annotation.answer)  # type: ignore[arg-type]
        else:
            counts.update(s.label for s in annotation.answer)  # type: ignore[union-attr]
        if annotation.probs and task.kind == "classify":
            confidences.append(max(annotation.probs.values()))
        if example.gold is not None:
            n_gold += 1
            correct += _matches(annotation.answer, example.gold, task.kind)
    accuracy = correct / n_gold if n_gold else None
    return AnnotateSummary(
        run_id=run_id,
        annotator=annotator,
        model=model_spec,
        method=method,
        examples=len(examples),
        annotated=annotated,
        resumed=resumed,
        cache_hits=hits,
        seconds=seconds,
        truncated=truncated,
        invalid=invalid,
        dropped_spans=dropped,
        probabilities=bool(confidences) or (task.kind == "multilabel" and backend.can_score),
        n_gold=n_gold,
        accuracy=accuracy,
        accuracy_interval=wilson_interval(correct, n_gold) if n_gold else None,
        label_counts=dict(counts.most_common()),
        mean_confidence=float(np.mean(confidences)) if confidences else None,
        skipped_rows=skipped,
        store=str(store.path),
    )


def _matches(answer: Any, gold: Any, kind: str) -> bool:
    """Exact match: same label, same label set, or the same spans (offsets and labels)."""
    if kind == "classify":
        return bool(answer == gold)
    if kind == "multilabel":
        return set(answer) == set(gold)
    return {(s.start, s.end, s.label) for s in answer} == {(s.start, s.end, s.label) for s in gold}


def _blocked_item(example_id: str, counts: dict[str, int]) -> ReviewItem:
    """The review-queue entry of a text ``[privacy] remote = "block"`` kept from the server:
    the reason and the entity types found (never their values)."""
    found = ", ".join(f"{entity} {count}" for entity, count in sorted(counts.items()))
    return ReviewItem(example_id, 0, 1.0, [f"{BLOCKED_REASON}: {found}"])


def _privacy(backend: Backend) -> Any:
    """The backend's privacy filter when it changes what is sent (remote, mode not ``allow``)."""
    privacy = getattr(backend, "privacy", None)
    return privacy if privacy is not None and privacy.mode != "allow" else None
