"""Prompts for each task kind, split so that everything fixed comes first.

A :class:`ChatPrompt` is a system message plus a user message made of a *fixed* part (instructions,
label list, fixed few-shot examples: the same for every text, so the backend's prefix cache covers
it) and a *variable* part (nearest-neighbour examples, then the text itself).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from stillhouse.data.records import Example, Span
from stillhouse.llm.spotlight import spotlight_instruction, spotlight_text
from stillhouse.provenance import json_sha256
from stillhouse.task import Shot, Task

PROMPT_VERSION = 1

_SYSTEM = {
    "classify": "You are a careful data annotator. Reply with exactly one label name from the list.",
    "multilabel": (
        "You are a careful data annotator. For the label you are asked about, reply with the "
        "label name, a colon and yes if it applies to the text, or no if it does not."
    ),
    "spans": (
        "You are a careful data annotator. Reply with JSON listing every entity in the text: "
        'its exact text as written and its label, as {"entities": [{"text": ..., "label": ...}]}.'
    ),
}


@dataclass(frozen=True)
class ChatPrompt:
    system: str
    fixed: str
    variable: str

    def messages(self) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.fixed + self.variable},
        ]

    def key(self) -> str:
        """A hash of the whole prompt, for cache keys."""
        return json_sha256([self.system, self.fixed, self.variable])


def _label_block(task: Task) -> str:
    lines = [
        f"- {name}: {description}" if description else f"- {name}"
        for name, description in task.labels.items()
    ]
    return "Labels:\n" + "\n".join(lines)


def _shot_answer(task: Task, shot: Shot | Example) -> str:
    if isinstance(shot, Example):
        gold = shot.gold
        if task.kind == "classify":
            return str(gold)
        if task.kind == "multilabel":
            return ", ".join(gold or ())  # type: ignore[arg-type]
        spans = [{"text": s.text, "label": s.label} for s in gold or () if isinstance(s, Span)]
        return json.dumps({"entities": spans}, ensure_ascii=False)
    if task.kind == "classify":
        return str(shot.label)
    if task.kind == "multilabel":
        return ", ".join(shot.labels or ())
    spans = [{"text": s.text, "label": s.label} for s in shot.spans or ()]
    return json.dumps({"entities": spans}, ensure_ascii=False)


def _answer_word(task: Task) -> str:
    return {"classify": "Label", "multilabel": "Labels", "spans": "Entities"}[task.kind]


def _shot_block(task: Task, shots: Sequence[Shot | Example]) -> str:
    word = _answer_word(task)
    mode = task.llm.spotlight  # the examples' texts are shown as the text is ([llm] spotlight)
    return "".join(
        f"Text: {spotlight_text(shot.text, mode)}\n{word}: {_shot_answer(task, shot)}\n\n"
        for shot in shots
    )


def build_prompt(task: Task, text: str, neighbours: Sequence[Example] = ()) -> ChatPrompt:
    """The prompt for one text; ``neighbours`` are dynamic few-shot examples (placed after the
    fixed part so the fixed part stays a shared prefix)."""
    fixed = ""
    if task.instructions:
        fixed += task.instructions.strip() + "\n\n"
    fixed += _label_block(task) + "\n\n"
    if task.examples:
        fixed += "Examples:\n\n" + _shot_block(task, task.examples)
    variable = ""
    if neighbours:
        variable += "Similar examples:\n\n" + _shot_block(task, neighbours)
    variable += f"Text: {spotlight_text(text, task.llm.spotlight)}"
    return ChatPrompt(system=_system(task), fixed=fixed, variable=variable)


def _system(task: Task) -> str:
    """The system message: the kind's, plus what ``[llm] spotlight`` tells the model."""
    return _SYSTEM[task.kind] + spotlight_instruction(task.llm.spotlight, task.kind)


def prompt_fingerprint(task: Task, shots: int) -> str:
    """Short hash of everything that shapes the prompts of a task: part of the annotator id."""
    return json_sha256(
        {
            "version": PROMPT_VERSION,
            "system": _SYSTEM[task.kind],
            "instructions": task.instructions,
            "labels": task.labels,
            "examples": [shot.model_dump(mode="json") for shot in task.examples],
            "shots": shots,
            "calibration": task.llm.contextual_calibration,
            # only when on, so that annotator ids from before spotlighting stay the same
            **({"spotlight": task.llm.spotlight} if task.llm.spotlight != "off" else {}),
        }
    )[:8]


def span_schema(labels: Sequence[str]) -> dict:
    """JSON schema for span extraction output."""
    return {
        "type": "object",
        "properties": {
            "entities": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "minLength": 1},
                        "label": {"type": "string", "enum": list(labels)},
                    },
                    "required": ["text", "label"],
                },
            }
        },
        "required": ["entities"],
    }


CONTENT_FREE_TEXTS = ("N/A", "", "[MASK]")
