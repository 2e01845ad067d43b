"""A batch of texts on its way to the LLM: each cut to ``[llm].max_text_tokens``, prompted and
cache-keyed (:func:`prepare_batch`), then looked up in the cache and the rest answered
(:func:`answer_batches`). ``stillhouse annotate`` runs it in this process; :mod:`stillhouse.scale`
runs the answering in Ray actors with the same preparation, so both give the same cache keys."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stillhouse.data.records import Example
from stillhouse.llm.answer import LLMAnswer, Method, answer_many
from stillhouse.llm.backend import Backend
from stillhouse.llm.prompts import PROMPT_VERSION, ChatPrompt, build_prompt
from stillhouse.llm.shortlist import Plan, answer_shortlisted
from stillhouse.provenance import json_sha256
from stillhouse.task import Task


def cache_key(
    backend: Backend, prompt: ChatPrompt, task: Task, method: str, plan: Plan | None = None
) -> str:
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
            # the prompt's hash holds it too; said outright, and only when on (older keys stay)
            **({"spotlight": task.llm.spotlight} if task.llm.spotlight != "off" else {}),
            # what was sent depends on the privacy mode (absent for in-process backends)
            **({"privacy": privacy.mode} if (privacy := privacy_filter(backend)) else {}),
            # a label shortlist: which labels were scored and the coverage that scales them
            **({"shortlist": plan.key()} if plan is not None else {}),
        }
    )


@dataclass(frozen=True)
class PreparedBatch:
    """A batch as the LLM sees it: each text cut to ``[llm].max_text_tokens`` (``cut_flags``: the
    original token count where it was cut, else None), its prompt and its cache key."""

    texts: list[str]
    cut_flags: list[int | None]
    prompts: list[ChatPrompt]
    keys: list[str]


# keys -> the cached answers among them (the store's cache_get_many)
CacheLookup = Callable[[list[str]], dict[str, Any]]
# a batch's prepared form, its cached answers by key, the fresh answers by position in the batch
AnsweredBatch = tuple[PreparedBatch, dict[str, Any], dict[int, LLMAnswer]]


def prepare_batch(
    backend: Backend,
    task: Task,
    method: str,
    batch: Sequence[Example],
    neighbours: Sequence[Sequence[Example]],
    plans: Mapping[str, Plan] | None = None,
) -> PreparedBatch:
    """Cut, prompt and cache-key every example of ``batch`` (``neighbours``: its few-shot
    examples, one list per example; ``plans``: label shortlists by example id)."""
    prompts, texts, cut_flags = [], [], []
    for example, near in zip(batch, neighbours, strict=True):
        text, n_tokens = backend.truncate(example.text, task.llm.max_text_tokens)
        cut_flags.append(n_tokens if len(text) < len(example.text) else None)
        prompts.append(build_prompt(task, text, near))
        texts.append(text)
    keys = [
        cache_key(backend, p, task, method, plans[e.id] if plans is not None else None)
        for p, e in zip(prompts, batch, strict=True)
    ]
    return PreparedBatch(texts, cut_flags, prompts, keys)


def answer_batches(
    backend: Backend,
    task: Task,
    method: Method,
    prior: np.ndarray | None,
    batches: Iterable[tuple[Sequence[Example], Sequence[Sequence[Example]]]],
    lookup: CacheLookup,
    plans: Mapping[str, Plan] | None = None,
) -> Iterator[AnsweredBatch]:
    """In this process, one batch after another: each (batch, neighbours) prepared, looked up in
    the cache, and the examples not cached answered by the LLM (``plans``: label shortlists by
    example id, filled while ``batches`` is read)."""
    for batch, neighbours in batches:
        prepared = prepare_batch(backend, task, method, batch, neighbours, plans)
        cached = lookup(prepared.keys)
        missing = [i for i, key in enumerate(prepared.keys) if key not in cached]
        if plans is not None:
            answers = answer_shortlisted(
                backend,
                task,
                [prepared.prompts[i] for i in missing],
                [plans[batch[i].id] for i in missing],
                method,
                prior,
            )
            yield prepared, cached, dict(zip(missing, answers, strict=True))
            continue
        answers = answer_many(
            backend,
            task,
            [prepared.prompts[i] for i in missing],
            [prepared.texts[i] for i in missing],
            method,
            prior,
        )
        yield prepared, cached, dict(zip(missing, answers, strict=True))


def privacy_filter(backend: Backend) -> Any:
    """The backend's privacy filter when it changes what is sent (remote, mode not ``allow``)."""
    privacy = getattr(backend, "privacy", None)
    return privacy if privacy is not None and privacy.mode != "allow" else None
