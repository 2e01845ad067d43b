"""Label descriptions from seed examples: the LLM proposes one line per label for a person to edit.

``stillhouse labels describe`` shows each label's first few seed texts to the LLM and asks for
one sentence on what texts get the label. The proposals are printed (or written to ``--out``) as
a TOML ``[labels]`` table; task.toml changes only with ``--write``, and then only the
descriptions of labels that got a proposal, each on its own ``name = "description"`` line.

In: a task, a labelled data file; out: :class:`Proposal` s, their TOML, an updated task.toml.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stillhouse.data.io import read_examples
from stillhouse.errors import Errors, fail
from stillhouse.llm.backend import Backend, open_backend
from stillhouse.llm.prompts import ChatPrompt
from stillhouse.task import Task, load_task

MAX_PER_LABEL = 50
_SYSTEM = (
    "You write short, precise label descriptions for a text classification task. Reply with "
    "one sentence only."
)


@dataclass(frozen=True)
class Proposal:
    """One label's description before and after; ``proposed`` None: no seed text had it."""

    label: str
    current: str
    proposed: str | None
    examples: int


def _prompt(task: Task, label: str, texts: Sequence[str]) -> ChatPrompt:
    fixed = ""
    if task.instructions:
        fixed += f"Task: {task.instructions.strip()}\n"
    fixed += "All labels: " + ", ".join(task.label_names) + "\n\n"
    shown = "\n".join(f"- {' '.join(text.split())[:300]}" for text in texts)
    variable = (
        f"Texts labelled {label}:\n{shown}\n\n"
        f"In at most 20 words, say what a text labelled {label} is about, so that it is not "
        "confused with the other labels."
    )
    return ChatPrompt(system=_SYSTEM, fixed=fixed, variable=variable)


def clean_reply(reply: str) -> str:
    """The reply's first non-empty line, without quotes, list marks or a ``label:`` lead-in,
    ending with a full stop."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = re.sub(r"^[-*\d.)\s]+", "", text).strip().strip("\"'`").strip()
    text = re.sub(r"^(description|answer)\s*:\s*", "", text, flags=re.IGNORECASE)
    if text and text[-1] not in ".!?":
        text += "."
    return text[:1].upper() + text[1:]


def propose_descriptions(
    task: Task,
    data: str | Path,
    *,
    model: str | None = None,
    per_label: int = 5,
    threads: int | None = None,
    backend: Backend | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Proposal]:
    """A proposal per label from its first ``per_label`` labelled texts in ``data`` (greedy
    generation, at most 48 tokens). E563 for a spans task, E564 for ``per_label`` outside
    1..50, E562 when no row of ``data`` carries one of the task's labels."""
    if task.kind not in ("classify", "multilabel"):
        raise fail(Errors.E563, kind=task.kind)
    if not 1 <= per_label <= MAX_PER_LABEL:
        raise fail(Errors.E564, n=per_label)
    examples = read_examples(data, task).examples
    texts: dict[str, list[str]] = {label: [] for label in task.label_names}
    for example in examples:
        gold = example.gold
        labels = [gold] if isinstance(gold, str) else list(gold or ())
        for label in labels:
            if label in texts and len(texts[label]) < per_label:
                texts[label].append(example.text)
    if not any(texts.values()):
        raise fail(Errors.E562, path=data)
    from stillhouse.annotate import backend_settings

    own = backend is None
    backend = backend or open_backend(
        model or task.llm.model, backend_settings(task, threads=threads)
    )
    try:
        proposals = []
        for done, label in enumerate(task.label_names, start=1):
            proposed = None
            if texts[label]:
                reply = backend.generate(_prompt(task, label, texts[label]), max_tokens=48).text
                proposed = clean_reply(reply) or None
            proposals.append(Proposal(label, task.labels[label], proposed, len(texts[label])))
            if progress:
                progress(done, len(task.label_names))
        return proposals
    finally:
        if own:
            backend.close()


def proposals_toml(proposals: Sequence[Proposal]) -> str:
    """A ``[labels]`` table: the proposal, else the current description (commented as such)."""
    lines = [
        "# proposed by `stillhouse labels describe`: edit, then paste into task.toml",
        "[labels]",
    ]
    for p in proposals:
        value = p.proposed if p.proposed is not None else p.current
        note = "" if p.proposed is not None else "  # no seed text: unchanged"
        lines.append(f"{_key(p.label)} = {json.dumps(value, ensure_ascii=False)}{note}")
    return "\n".join(lines) + "\n"


def _key(label: str) -> str:
    return label if re.fullmatch(r"[A-Za-z0-9_-]+", label) else json.dumps(label)


def write_descriptions(task_path: Path, proposals: Sequence[Proposal]) -> int:
    """Replace, in task.toml's ``[labels]`` table, the description of every label with a
    proposal; returns how many changed. The file is replaced whole (a temporary file renamed
    over it) and only after the result loads as the same task with the new descriptions; E566
    when a label's line is not a plain ``name = "description"`` line of that table."""
    original = task_path.read_text(encoding="utf-8")
    lines = original.splitlines(keepends=True)
    wanted = {p.label: p.proposed for p in proposals if p.proposed is not None}
    table = None
    found: set[str] = set()
    for number, line in enumerate(lines):
        header = re.match(r"\s*\[([^\]]+)\]\s*(#.*)?$", line)
        if header:
            table = header.group(1).strip()
            continue
        if table != "labels":
            continue
        match = re.match(r'(\s*)("(?:[^"\\]|\\.)*"|[A-Za-z0-9_-]+)(\s*=\s*)', line)
        if not match:
            continue
        key = json.loads(match.group(2)) if match.group(2).startswith('"') else match.group(2)
        if key in wanted:
            ending = "\n" if line.endswith("\n") else ""
            lines[number] = match.group(1) + match.group(2) + match.group(3)
            lines[number] += json.dumps(wanted[key], ensure_ascii=False) + ending
            found.add(key)
    missing = [label for label in wanted if label not in found]
    if missing:
        raise fail(Errors.E566, path=task_path, label=missing[0])
    updated = "".join(lines)
    handle, temporary = tempfile.mkstemp(dir=task_path.parent, suffix=".toml.tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(updated)
        check = load_task(temporary)
        if any(check.labels.get(label) != text for label, text in wanted.items()):
            raise fail(Errors.E566, path=task_path, label=next(iter(wanted)))
        os.replace(temporary, task_path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return sum(1 for p in proposals if p.proposed is not None and p.proposed != p.current)
