"""annotate and export end to end: the small real model labels NusaX texts into a real SQLite
store, through the Python API and the `stillhouse` command; cached, resumable after kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stillhouse.annotate import annotate, annotator_id, backend_settings
from stillhouse.data.records import Annotation, Example, Kind, Span
from stillhouse.data.store import Store
from stillhouse.export import export
from stillhouse.llm.backend import Backend, open_backend
from stillhouse.task import Task, load_task

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
NUSAX_TASK = Path(__file__).resolve().parents[1] / "examples" / "nusax-sentiment-en" / "task.toml"
SENTIMENT_LABELS = {"positive", "neutral", "negative"}
SMALL_MODEL_SETTINGS = f'[llm]\nmodel = "{MODEL}"\nthreads = 2\nn_ctx = 2048\nbatch_size = 4\n'

CLI = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class Workspace:
    folder: Path
    task_path: Path
    input: Path

    @property
    def task(self) -> Task:
        return load_task(self.task_path)

    @property
    def store_path(self) -> Path:
        return self.folder / "stillhouse.db"

    def annotate_args(self, *extra: str) -> tuple[str, ...]:
        return ("annotate", "--task", str(self.task_path), "--input", str(self.input), *extra)


@pytest.fixture(scope="session")
def make_workspace(
    write_task: Callable[..., Path], write_rows: Callable[..., Path]
) -> Callable[..., Workspace]:
    """``make_workspace(folder, rows, suffix=".csv", text=None, **task_options)``: a task folder
    (the NusaX task on the small model unless ``text`` is given) with ``rows`` as its input."""

    def make(
        folder: Path,
        rows: Sequence[dict[str, Any]],
        suffix: str = ".csv",
        text: str | None = None,
        **task_options: Any,
    ) -> Workspace:
        task_path = write_task(folder, text, **task_options)
        return Workspace(folder, task_path, write_rows(folder / f"input{suffix}", rows))

    return make


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    """One loaded model for every API call of the module, with the NusaX task's settings."""
    opened = open_backend(MODEL, backend_settings(load_task(NUSAX_TASK), threads=2))
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def annotated(
    tmp_path_factory: pytest.TempPathFactory,
    make_workspace: Callable[..., Workspace],
    nusax_rows: list[dict[str, Any]],
    run_cli: CLI,
) -> tuple[Workspace, dict[str, Any]]:
    """A workspace where `stillhouse annotate --limit 8 --json` ran over 10 NusaX rows."""
    workspace = make_workspace(tmp_path_factory.mktemp("annotated"), nusax_rows[:10])
    result = run_cli(workspace.folder, *workspace.annotate_args("--limit", "8", "--json"))
    assert result.returncode == 0, result.stderr
    return workspace, json.loads(result.stdout)


def llm_annotations(workspace: Workspace, kind: Kind = "classify") -> dict[str, Annotation]:
    with Store(workspace.store_path) as store:
        return {a.example_id: a for a in store.annotations(kind) if a.annotator.startswith("llm:")}


def stored_examples(workspace: Workspace, kind: Kind = "classify") -> dict[str, Example]:
    with Store(workspace.store_path) as store:
        return {e.id: e for e in store.examples(kind)}


def delete_llm_annotations(workspace: Workspace) -> None:
    with sqlite3.connect(workspace.store_path) as db:
        db.execute("DELETE FROM annotations WHERE annotator LIKE 'llm:%'")
    db.close()


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr


# the annotate command ----------------------------------------------------------------------------


def test_annotate_stores_an_llm_answer_with_probabilities_and_the_gold_label_per_row(
    annotated: tuple[Workspace, dict[str, Any]], nusax_rows: list[dict[str, Any]]
) -> None:
    workspace, summary = annotated
    gold = {row["id"]: row["label"] for row in nusax_rows[:8]}

    assert (summary["examples"], summary["annotated"], summary["resumed"]) == (8, 8, 0)
    assert summary["annotator"].startswith(f"llm:{MODEL}@")
    assert summary["n_gold"] == 8 and summary["probabilities"] is True
    with Store(workspace.store_path) as store:
        assert store.count_examples() == 8  # --limit 8 of 10 rows
        llm = store.annotations("classify", summary["annotator"])
        golds = store.annotations("classify", "gold")
    assert {a.example_id for a in llm} == set(gold)
    for annotation in llm:
        assert annotation.probs is not None and set(annotation.probs) == SENTIMENT_LABELS
        assert sum(annotation.probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert annotation.answer == max(annotation.probs, key=annotation.probs.__getitem__)
    assert {a.example_id: a.answer for a in golds} == gold


def test_the_summary_table_shows_accuracy_and_cache_hits(
    annotated: tuple[Workspace, dict[str, Any]], run_cli: CLI
) -> None:
    workspace, _ = annotated

    result = run_cli(workspace.folder, *workspace.annotate_args("--limit", "8"))

    assert result.returncode == 0, result.stderr
    assert "accuracy vs gold" in result.stdout
    assert "cache hits" in result.stdout
    assert "8 already done" in result.stdout


def test_running_the_same_command_again_resumes_without_recomputing(
    annotated: tuple[Workspace, dict[str, Any]], run_cli: CLI
) -> None:
    workspace, first = annotated
    before = llm_annotations(workspace)

    result = run_cli(workspace.folder, *workspace.annotate_args("--limit", "8", "--json"))

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["annotated"], summary["resumed"], summary["cache_hits"]) == (0, 8, 0)
    assert summary["annotator"] == first["annotator"]
    assert summary["accuracy"] == first["accuracy"]
    assert llm_annotations(workspace) == before  # not rewritten: same created_at


# cache -----------------------------------------------------------------------------------------


def test_deleted_annotations_come_back_from_the_cache_unless_it_is_bypassed(
    tmp_path: Path,
    make_workspace: Callable[..., Workspace],
    nusax_rows: list[dict[str, Any]],
    backend: Backend,
) -> None:
    workspace = make_workspace(tmp_path, nusax_rows[:8])
    first = annotate(workspace.task, workspace.input, backend=backend)
    computed = llm_annotations(workspace)
    assert (first.annotated, first.cache_hits) == (8, 0)

    delete_llm_annotations(workspace)
    cached = annotate(workspace.task, workspace.input, backend=backend)
    from_cache = llm_annotations(workspace)

    delete_llm_annotations(workspace)
    bypassed = annotate(workspace.task, workspace.input, backend=backend, use_cache=False)
    recomputed = llm_annotations(workspace)

    assert (cached.annotated, cached.resumed, cached.cache_hits) == (8, 0, 8)
    assert cached.annotator == first.annotator
    assert {i: (a.answer, a.probs) for i, a in from_cache.items()} == {
        i: (a.answer, a.probs) for i, a in computed.items()
    }
    assert (bypassed.annotated, bypassed.cache_hits) == (8, 0)
    for example_id, annotation in recomputed.items():
        assert annotation.answer == computed[example_id].answer
        assert annotation.probs == pytest.approx(computed[example_id].probs, abs=1e-9)


def test_changed_instructions_make_a_new_annotator_that_misses_the_cache(
    tmp_path: Path,
    make_workspace: Callable[..., Workspace],
    nusax_rows: list[dict[str, Any]],
    backend: Backend,
) -> None:
    workspace = make_workspace(tmp_path, nusax_rows[:8])
    first = annotate(workspace.task, workspace.input, backend=backend)
    text = workspace.task_path.read_text(encoding="utf-8")
    edited = text.replace(
        'instructions = "Classify the sentiment of the text."',
        'instructions = "Classify the sentiment of the review."',
    )
    assert edited != text
    workspace.task_path.write_text(edited, encoding="utf-8")

    second = annotate(workspace.task, workspace.input, backend=backend)

    assert second.annotator != first.annotator
    assert (second.annotated, second.resumed, second.cache_hits) == (8, 0, 0)
    with Store(workspace.store_path) as store:
        assert dict(store.annotators()) == {"gold": 8, first.annotator: 8, second.annotator: 8}


# kill -9 -----------------------------------------------------------------------------------------


def _wait_for_llm_annotations(
    store_path: Path, process: subprocess.Popen[bytes], at_least: int, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while not store_path.exists():
        assert process.poll() is None, "annotate ended before creating the store"
        assert time.monotonic() < deadline, "no store appeared"
        time.sleep(0.02)
    with Store(store_path) as store:
        while True:
            count = sum(n for name, n in store.annotators() if name.startswith("llm:"))
            if count >= at_least:
                return
            assert process.poll() is None, f"annotate ended with {count} annotations"
            assert time.monotonic() < deadline, f"only {count} annotations after {timeout} s"
            time.sleep(0.02)


def test_a_run_killed_with_sigkill_resumes_to_the_same_labels_as_an_uninterrupted_run(
    tmp_path: Path,
    make_workspace: Callable[..., Workspace],
    nusax_rows: list[dict[str, Any]],
    run_cli: CLI,
    cli_env: dict[str, str],
    backend: Backend,
) -> None:
    rows = nusax_rows[:40]
    killed = make_workspace(tmp_path / "killed", rows)
    process = subprocess.Popen(
        [sys.executable, "-m", "stillhouse.cli", *killed.annotate_args()],
        cwd=killed.folder,
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_llm_annotations(killed.store_path, process, at_least=8)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    with sqlite3.connect(killed.store_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        (kept,) = db.execute(
            "SELECT COUNT(*) FROM annotations WHERE annotator LIKE 'llm:%'"
        ).fetchone()
    db.close()
    assert kept % 4 == 0 and 8 <= kept < 40  # whole batches of 4, and the run was cut short
    with Store(killed.store_path) as store:
        [cut] = store.runs()
    assert cut.status == "running" and cut.stats is not None and cut.stats["pid"] == process.pid

    result = run_cli(killed.folder, *killed.annotate_args("--json"), timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["resumed"], summary["annotated"]) == (kept, 40 - kept)
    with Store(killed.store_path) as store:
        interrupted, resumed = store.runs()
    # The next run saw that the killed run's process is gone.
    assert (interrupted.id, interrupted.status) == (cut.id, "interrupted")
    assert interrupted.finished_at is not None and interrupted.finished_at >= cut.started_at
    assert (resumed.id, resumed.status) == (summary["run_id"], "finished")

    whole = make_workspace(tmp_path / "uninterrupted", rows)
    annotate(whole.task, whole.input, backend=backend)

    resumed_labels, whole_labels = llm_annotations(killed), llm_annotations(whole)
    assert set(resumed_labels) == set(whole_labels) == {row["id"] for row in rows}
    largest_difference = 0.0
    for example_id, annotation in whole_labels.items():
        other = resumed_labels[example_id]
        assert other.answer == annotation.answer
        assert other.probs is not None and annotation.probs is not None
        for label, p in annotation.probs.items():
            largest_difference = max(largest_difference, abs(other.probs[label] - p))
    print(f"killed at {kept} of 40; largest probability difference {largest_difference:.3g}")
    assert largest_difference < 1e-6


def test_ctrl_c_marks_the_run_interrupted_and_keeps_the_committed_batch(
    tmp_path: Path,
    make_workspace: Callable[..., Workspace],
    nusax_rows: list[dict[str, Any]],
    backend: Backend,
) -> None:
    workspace = make_workspace(tmp_path, nusax_rows[:8])

    def press_ctrl_c(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        annotate(workspace.task, workspace.input, backend=backend, progress=press_ctrl_c)
    with Store(workspace.store_path) as store:
        [stopped] = store.runs()
    assert stopped.status == "interrupted" and stopped.finished_at is not None
    assert len(llm_annotations(workspace)) == 4  # the first batch of 4 was committed

    resumed = annotate(workspace.task, workspace.input, backend=backend)
    assert (resumed.resumed, resumed.annotated) == (4, 4)


# a store that stays true to its data -------------------------------------------------------------


def test_a_changed_text_under_a_known_id_is_E207_and_changes_nothing(
    annotated: tuple[Workspace, dict[str, Any]],
    nusax_rows: list[dict[str, Any]],
    write_rows: Callable[..., Path],
    run_cli: CLI,
    tmp_path: Path,
) -> None:
    workspace, _ = annotated
    rows = [dict(row) for row in nusax_rows[:8]]
    rows[3]["text"] = rows[3]["text"] + " Edited afterwards."
    edited = write_rows(tmp_path / "edited.csv", rows)
    with sqlite3.connect(workspace.store_path) as db:
        before = db.execute("SELECT * FROM examples ORDER BY rowid").fetchall()
        runs_before = db.execute("SELECT COUNT(*) FROM runs").fetchone()
    db.close()

    result = run_cli(
        workspace.folder,
        *("annotate", "--task", str(workspace.task_path), "--input", str(edited)),
    )

    assert_clean_error(result, f"id '{rows[3]['id']}'", "Edited afterwards", "[E207]")
    with sqlite3.connect(workspace.store_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT * FROM examples ORDER BY rowid").fetchall() == before
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == runs_before
    db.close()


def test_a_changed_gold_label_in_the_data_file_is_what_export_writes(
    tmp_path: Path,
    make_workspace: Callable[..., Workspace],
    nusax_rows: list[dict[str, Any]],
    write_rows: Callable[..., Path],
    backend: Backend,
) -> None:
    rows = [dict(row) for row in nusax_rows[:4]]
    workspace = make_workspace(tmp_path, rows)
    annotate(workspace.task, workspace.input, backend=backend)
    old = rows[0]["label"]
    rows[0]["label"] = next(label for label in sorted(SENTIMENT_LABELS) if label != old)
    write_rows(workspace.input, rows)

    again = annotate(workspace.task, workspace.input, backend=backend)
    export(workspace.task, tmp_path / "gold.jsonl", annotator="gold")

    assert (again.resumed, again.annotated) == (4, 0)
    assert stored_examples(workspace)[rows[0]["id"]].gold == rows[0]["label"]
    first = _read_jsonl(tmp_path / "gold.jsonl")[0]
    assert (first["meta"]["id"], first["text"], first["label"]) == (
        rows[0]["id"],
        rows[0]["text"],
        rows[0]["label"],
    )


# bad input -------------------------------------------------------------------------------------

ROW = {"id": "1", "text": "The staff were lovely.", "label": "positive"}


def _jsonl(*rows: dict[str, Any] | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


@pytest.mark.parametrize(
    ("file_name", "content", "extra_args", "fragments"),
    [
        pytest.param(
            "input.jsonl",
            _jsonl(ROW, '{"id": "2", "text": "Broken'),
            (),
            ("input.jsonl:2", "not valid JSON", "[E105]"),
            id="malformed-json-line",
        ),
        pytest.param(
            "input.csv",
            "id,body,label\n1,The staff were lovely.,positive\n",
            (),
            ("input.csv", "column `text`", "[E106]"),
            id="csv-without-text-column",
        ),
        pytest.param(
            "input.jsonl",
            _jsonl(ROW, {"id": "2", "text": "Fine.", "label": "happy"}),
            (),
            ("input.jsonl:2", "unknown label 'happy'", "[E105]"),
            id="unknown-gold-label",
        ),
        pytest.param(
            "input.jsonl",
            _jsonl(ROW, {"id": "2", "text": "", "label": "neutral"}),
            (),
            ("input.jsonl:2", "is empty", "[E105]"),
            id="empty-text",
        ),
        pytest.param(
            "input.jsonl",
            _jsonl(ROW, {**ROW, "text": "Another text."}),
            (),
            ("input.jsonl:2", "duplicate id '1'", "input.jsonl:1", "[E105]"),
            id="duplicate-ids",
        ),
        pytest.param(
            "input.jsonl",
            _jsonl(ROW),
            ("--model", "{folder}/missing.gguf"),
            ("missing.gguf", "[E301]"),
            id="model-path-missing",
        ),
        pytest.param(
            "input.jsonl",
            _jsonl(ROW),
            ("--model", "{folder}/notes.gguf"),
            ("notes.gguf", "not a GGUF", "[E302]"),
            id="model-not-gguf",
        ),
        pytest.param(
            "input.jsonl",
            _jsonl(ROW),
            ("--method", "guess"),
            ("method `guess`", "[E403]"),
            id="unknown-method",
        ),
    ],
)
def test_bad_input_is_one_clean_error_and_writes_nothing(
    tmp_path: Path,
    write_task: Callable[..., Path],
    run_cli: CLI,
    file_name: str,
    content: str,
    extra_args: Sequence[str],
    fragments: Sequence[str],
) -> None:
    task_path = write_task(tmp_path)
    (tmp_path / file_name).write_text(content, encoding="utf-8")
    (tmp_path / "notes.gguf").write_text("these are notes, not a model\n", encoding="utf-8")
    args = [arg.replace("{folder}", str(tmp_path)) for arg in extra_args]

    result = run_cli(
        tmp_path, "annotate", "--task", str(task_path), "--input", file_name, *args, timeout=60
    )

    assert_clean_error(result, *fragments)
    store_path = tmp_path / "stillhouse.db"
    if store_path.exists():
        with Store(store_path) as store:
            assert store.count_examples() == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_server_is_E307_after_the_retries(
    tmp_path: Path, write_task: Callable[..., Path], run_cli: CLI
) -> None:
    task_path = write_task(tmp_path)
    (tmp_path / "input.jsonl").write_text(_jsonl(ROW), encoding="utf-8")
    url = f"http://127.0.0.1:{_free_port()}/v1"

    started = time.monotonic()
    result = run_cli(
        tmp_path,
        *("annotate", "--task", str(task_path), "--input", "input.jsonl"),
        *("--model", f"openai:{url}#m"),
        timeout=60,
    )

    assert_clean_error(result, url, "[E307]")
    assert time.monotonic() - started < 30
    # The texts were registered before the first request; no answer and a failed run remain.
    with Store(tmp_path / "stillhouse.db") as store:
        assert [name for name, _ in store.annotators()] == ["gold"]
        assert [run.status for run in store.runs()] == ["failed"]


# long texts and invalid rows ---------------------------------------------------------------------


def test_a_one_megabyte_text_is_truncated_and_counted(
    tmp_path: Path,
    make_workspace: Callable[..., Workspace],
    nusax_rows: list[dict[str, Any]],
    run_cli: CLI,
) -> None:
    sentence = "The hotel was lovely and the staff were kind to us every day. "
    big = sentence * (1_000_000 // len(sentence) + 1)
    workspace = make_workspace(
        tmp_path, [{"id": "big", "text": big, "label": "positive"}, *nusax_rows[:2]]
    )

    result = run_cli(workspace.folder, *workspace.annotate_args("--json"))

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["annotated"], summary["truncated"]) == (3, 1)
    annotations = llm_annotations(workspace)
    truncated = annotations["big"].info["truncated"]
    max_text_tokens = workspace.task.llm.max_text_tokens
    assert truncated["kept_tokens"] == max_text_tokens
    assert truncated["original_tokens"] > max_text_tokens
    assert all("truncated" not in annotations[row["id"]].info for row in nusax_rows[:2])
    assert stored_examples(workspace)["big"].text == big  # the store keeps the whole text


def test_skip_invalid_drops_a_malformed_line_and_reports_it(
    tmp_path: Path,
    write_task: Callable[..., Path],
    nusax_rows: list[dict[str, Any]],
    run_cli: CLI,
) -> None:
    task_path = write_task(tmp_path)
    lines = [json.dumps(row) for row in nusax_rows[:3]]
    lines.insert(2, '{"id": "broken", "text": ')
    (tmp_path / "input.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = run_cli(
        tmp_path,
        *("annotate", "--task", str(task_path), "--input", "input.jsonl", "--skip-invalid"),
    )

    assert result.returncode == 0, result.stderr
    assert "skipped rows" in result.stdout
    assert "input.jsonl:3" in result.stdout
    workspace = Workspace(tmp_path, task_path, tmp_path / "input.jsonl")
    assert set(llm_annotations(workspace)) == {row["id"] for row in nusax_rows[:3]}


# methods and task kinds --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["generate", "constrained"])
def test_generation_methods_give_answers_without_probabilities(
    tmp_path: Path,
    make_workspace: Callable[..., Workspace],
    nusax_rows: list[dict[str, Any]],
    backend: Backend,
    method: str,
) -> None:
    workspace = make_workspace(tmp_path, nusax_rows[:4])

    summary = annotate(workspace.task, workspace.input, method=method, backend=backend)  # type: ignore[arg-type]

    annotations = llm_annotations(workspace)
    assert summary.method == method and summary.probabilities is False
    assert summary.annotator == annotator_id(MODEL, workspace.task, method, 0)
    assert len(annotations) == 4
    assert all(a.probs is None for a in annotations.values())
    invalid = [a for a in annotations.values() if a.info.get("invalid")]
    assert summary.invalid == len(invalid)
    assert all(a.answer in SENTIMENT_LABELS for a in annotations.values() if a not in invalid)
    if method == "constrained":  # the grammar allows only label names
        assert summary.invalid == 0


def test_contextual_calibration_keeps_the_uncalibrated_answer_in_info(
    tmp_path: Path,
    make_workspace: Callable[..., Workspace],
    nusax_rows: list[dict[str, Any]],
    backend: Backend,
) -> None:
    workspace = make_workspace(
        tmp_path, nusax_rows[:4], extra_llm="contextual_calibration = true\n"
    )
    assert workspace.task.llm.contextual_calibration is True

    summary = annotate(workspace.task, workspace.input, backend=backend)

    assert summary.annotator != annotator_id(MODEL, load_task(NUSAX_TASK), "score", 0)
    for annotation in llm_annotations(workspace).values():
        assert annotation.info["uncalibrated_top"] in SENTIMENT_LABELS
        assert annotation.probs is not None
        assert sum(annotation.probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert annotation.answer == max(annotation.probs, key=annotation.probs.__getitem__)


MULTILABEL_TASK = f"""
name = "restaurant-topics"
kind = "multilabel"
instructions = "Which topics does the review talk about?"

[labels]
food = "The food or the drinks."
service = "The staff or the service."
price = "Prices or value for money."

{SMALL_MODEL_SETTINGS}"""

SPANS_TASK = f"""
name = "names"
kind = "spans"
instructions = "List the names of people, places and organisations in the text."

[labels]
person = "A person."
location = "A place."
organisation = "A company."

# One example is enough for the small model to copy names instead of the label descriptions.
[[examples]]
text = "Lionel Messi flew to Madrid with Adidas."
spans = [
    {{ text = "Lionel Messi", label = "person" }},
    {{ text = "Madrid", label = "location" }},
    {{ text = "Adidas", label = "organisation" }},
]

{SMALL_MODEL_SETTINGS}"""


def test_multilabel_gives_each_label_a_probability_and_keeps_those_over_one_half(
    tmp_path: Path, make_workspace: Callable[..., Workspace], backend: Backend
) -> None:
    texts = [
        "The pasta was delicious but far too expensive.",
        "Our waiter was rude and slow.",
        "Cheap beer, friendly staff.",
    ]
    workspace = make_workspace(
        tmp_path, [{"text": t} for t in texts], suffix=".jsonl", text=MULTILABEL_TASK
    )

    summary = annotate(workspace.task, workspace.input, backend=backend)

    labels = workspace.task.label_names
    annotations = llm_annotations(workspace, "multilabel")
    assert summary.probabilities is True and len(annotations) == 3
    for annotation in annotations.values():
        assert annotation.probs is not None and list(annotation.probs) == labels
        assert all(0.0 <= p <= 1.0 for p in annotation.probs.values())
        assert annotation.answer == tuple(
            label for label in labels if annotation.probs[label] >= 0.5
        )


def test_spans_are_located_in_the_text_and_dropped_entities_are_counted(
    tmp_path: Path, make_workspace: Callable[..., Workspace], backend: Backend
) -> None:
    texts = [
        "Angela Merkel visited Paris.",
        "John works at Google in London.",
        "Barack Obama was born in Hawaii.",
    ]
    workspace = make_workspace(
        tmp_path, [{"text": t} for t in texts], suffix=".jsonl", text=SPANS_TASK
    )

    summary = annotate(workspace.task, workspace.input, backend=backend)

    annotations = llm_annotations(workspace, "spans")
    examples = stored_examples(workspace, "spans")
    assert len(annotations) == 3 and summary.probabilities is False
    spans = [
        (examples[example_id].text, span)
        for example_id, annotation in annotations.items()
        for span in annotation.answer
        if isinstance(span, Span)
    ]
    assert spans  # the model found some names, so the checks below check something
    for text, span in spans:
        assert text[span.start : span.end] == span.text
        assert span.label in {"person", "location", "organisation"}
    assert summary.dropped_spans == sum(a.info["dropped_spans"] for a in annotations.values())


def test_nearest_neighbour_shots_change_the_annotator(
    tmp_path: Path,
    make_workspace: Callable[..., Workspace],
    nusax_rows: list[dict[str, Any]],
    run_cli: CLI,
) -> None:
    workspace = make_workspace(tmp_path, nusax_rows[:8])

    result = run_cli(workspace.folder, *workspace.annotate_args("--shots", "2", "--json"))

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["annotated"] == 8
    assert summary["annotator"] == annotator_id(MODEL, workspace.task, "score", 2)
    assert summary["annotator"] != annotator_id(MODEL, workspace.task, "score", 0)


def test_unlabelled_only_asks_the_llm_about_rows_without_gold_and_uses_the_rest_as_shots(
    tmp_path: Path,
    make_workspace: Callable[..., Workspace],
    nusax_rows: list[dict[str, Any]],
    run_cli: CLI,
) -> None:
    rows = [row | {"label": ""} if i >= 5 else row for i, row in enumerate(nusax_rows[:8])]
    workspace = make_workspace(tmp_path, rows)

    result = run_cli(
        workspace.folder, *workspace.annotate_args("--shots", "2", "--unlabelled-only", "--json")
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    unlabelled = {row["id"] for row in rows[5:]}
    assert (summary["examples"], summary["annotated"], summary["n_gold"]) == (3, 3, 0)
    assert summary["annotator"] == annotator_id(MODEL, workspace.task, "score", 2)
    assert set(llm_annotations(workspace)) == unlabelled
    assert len(stored_examples(workspace)) == 8  # the labelled rows are stored all the same
    with Store(workspace.store_path) as store:
        gold = {a.example_id for a in store.annotations("classify", "gold")}
    assert gold == {row["id"] for row in rows[:5]}


# export ----------------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_best_takes_the_gold_labels(
    annotated: tuple[Workspace, dict[str, Any]],
    nusax_rows: list[dict[str, Any]],
    run_cli: CLI,
    tmp_path: Path,
) -> None:
    workspace, _ = annotated
    out = tmp_path / "best.jsonl"

    result = run_cli(tmp_path, "export", "--task", str(workspace.task_path), "--out", str(out))

    assert result.returncode == 0, result.stderr
    gold = {row["id"]: row["label"] for row in nusax_rows[:8]}
    records = _read_jsonl(out)
    assert len(records) == 8
    assert {r["meta"]["id"]: r["label"] for r in records} == gold
    assert all(r["meta"]["annotator"] == "gold" and r["accept"] == [r["label"]] for r in records)


def test_export_llm_takes_the_llm_answers_with_their_probabilities(
    annotated: tuple[Workspace, dict[str, Any]], run_cli: CLI, tmp_path: Path
) -> None:
    workspace, summary = annotated
    out = tmp_path / "llm.jsonl"

    result = run_cli(
        tmp_path,
        *("export", "--task", str(workspace.task_path), "--out", str(out), "--annotator", "llm"),
    )

    assert result.returncode == 0, result.stderr
    records = _read_jsonl(out)
    answers = llm_annotations(workspace)
    assert len(records) == 8
    for record in records:
        assert record["meta"]["annotator"] == summary["annotator"]
        assert set(record["probs"]) == SENTIMENT_LABELS
        assert record["label"] == answers[record["meta"]["id"]].answer


def test_export_with_an_unknown_annotator_is_E401_and_writes_nothing(
    annotated: tuple[Workspace, dict[str, Any]], run_cli: CLI, tmp_path: Path
) -> None:
    workspace, _ = annotated
    out = tmp_path / "nobody.jsonl"

    result = run_cli(
        tmp_path,
        *("export", "--task", str(workspace.task_path), "--out", str(out)),
        *("--annotator", "llm:nobody@00000000"),
    )

    assert_clean_error(result, "llm:nobody@00000000", "[E401]")
    assert not out.exists()


# init (the demo: tests/test_demo.py) -----------------------------------------------------------


def test_a_task_made_with_init_annotates_end_to_end(tmp_path: Path, run_cli: CLI) -> None:
    assert run_cli(tmp_path, "init", "x").returncode == 0
    task_path = tmp_path / "x" / "task.toml"
    template = task_path.read_text(encoding="utf-8")
    assert 'model = "qwen2.5-0.5b"' in template
    task_path.write_text(template.replace('model = "qwen2.5-0.5b"', f'model = "{MODEL}"'))
    rows = [
        {"text": "Works perfectly, I love it.", "label": "positive"},
        {"text": "It broke on the first day.", "label": "negative"},
        {"text": "It comes in a blue box.", "label": "neutral"},
    ]
    (tmp_path / "texts.jsonl").write_text(_jsonl(*rows), encoding="utf-8")

    result = run_cli(
        tmp_path,
        *("annotate", "--task", str(task_path), "--input", "texts.jsonl", "--json"),
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["annotated"], summary["n_gold"]) == (3, 3)
    assert summary["annotator"].startswith(f"llm:{MODEL}@")
    assert (tmp_path / "x" / "stillhouse.db").is_file()
