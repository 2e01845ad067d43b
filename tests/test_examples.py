"""Every example under ``examples/`` runs as its README says, so none can rot.

Each example's README has a ``## Run it`` section whose ``bash`` block lists the commands a
user types in the example's folder: ``annotate`` (the LLM on a few texts), ``train`` (the
recipe the example names, on the bundled training file), ``evaluate`` and ``gate``. The slow
test runs exactly those commands through the real CLI (typer's runner, in this process: one
import of spaCy and llama.cpp for all of them) in a copy of the folder, with one change:
``annotate`` runs the small SmolLM2 on ``ANNOTATE_LIMIT`` texts instead of the task's model
on the README's count (generated answers cut at ``ANNOTATE_MAX_NEW_TOKENS``, set in the copy's
``[llm]``). ``train`` and ``evaluate`` run on the full bundled files, as
documented, so the gate's verdict is the one a user gets: it must pass (exit 0), every rule
measured. The fast tests check what a folder must hold: a task that loads with a ``[gate]``,
a license, the four commands, data files that read with gold answers, small enough for the
repository, with no test text among the training texts.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stillhouse.cli import app
from stillhouse.data.io import read_examples
from stillhouse.evaluate.results import read_results
from stillhouse.gate import gate
from stillhouse.task import Task, load_task

REPO = Path(__file__).resolve().parents[1]
SMALL_MODEL = "smollm2-135m"  # the fast embedded model (as tests/conftest.py)
EXAMPLES = REPO / "examples"
FOLDERS = sorted(path.parent for path in EXAMPLES.glob("*/task.toml"))
COMMANDS = ["annotate", "train", "evaluate", "gate"]
ANNOTATE_LIMIT = 2
# span answers are generated token by token: a rambling small model's answer is cut here
# (label scoring, for classify and multilabel, generates nothing)
ANNOTATE_MAX_NEW_TOKENS = 32
MAX_FOLDER_BYTES = 1_500_000  # a sample for the repository, not a data set
# the options of each command that name a data file of the example
DATA_OPTIONS = {"annotate": "--input", "train": "--data", "evaluate": "--test"}


def readme_commands(folder: Path) -> list[list[str]]:
    """The ``stillhouse`` commands of the README's ``## Run it`` bash block, each as its
    arguments after ``stillhouse`` (``\\`` continuations joined, ``#`` comments dropped)."""
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "\n## Run it\n" in readme, f"{folder.name}/README.md has no `## Run it` section"
    section = readme.split("\n## Run it\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("\n```", 1)[0]
    lines = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]
    return [words[1:] for words in lines if words and words[0] == "stillhouse"]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def with_option(args: list[str], name: str, value: str) -> list[str]:
    """``args`` with ``name value`` set (replaced where given, else appended)."""
    if name in args:
        at = args.index(name)
        return [*args[: at + 1], value, *args[at + 2 :]]
    return [*args, name, value]


@pytest.fixture(params=FOLDERS, ids=[folder.name for folder in FOLDERS])
def example(request: pytest.FixtureRequest) -> Path:
    return request.param


def test_there_is_an_example_of_every_task_kind() -> None:
    kinds = {load_task(folder).kind for folder in FOLDERS}
    assert kinds == {"classify", "multilabel", "spans"}


def test_the_example_folder_holds_a_gated_task_its_license_and_the_commands(
    example: Path,
) -> None:
    task = load_task(example)
    assert task.gate, f"{example.name}/task.toml has no [gate] rules"
    assert (example / "LICENSE").is_file()
    readme = (example / "README.md").read_text(encoding="utf-8")
    assert "license" in readme.lower() and "`LICENSE`" in readme
    commands = readme_commands(example)
    assert [args[0] for args in commands] == COMMANDS
    train = commands[1]
    assert f"**`{option(train, '--recipe')}`**" in readme, "the README names its recipe"
    # evaluate reads the model train writes; gate reads the results evaluate writes
    evaluate, verdict = commands[2], commands[3]
    assert f"=model:{option(train, '--out')}" in option(evaluate, "--system")
    assert option(verdict, "--results") == f"{option(evaluate, '--out')}/results.json"
    size = sum(path.stat().st_size for path in example.rglob("*") if path.is_file())
    assert size <= MAX_FOLDER_BYTES, f"{example.name}: {size:,} bytes is too large a sample"


def read_gold(task: Task, path: Path) -> dict[str, str]:
    """id → text of every row of ``path`` (each must carry a valid gold answer)."""
    examples = read_examples(path, task, require_gold=True).examples
    assert examples and all(example.gold is not None for example in examples)
    return {example.id: example.text for example in examples}


def test_the_example_data_reads_with_gold_and_no_test_text_is_in_training(example: Path) -> None:
    task = load_task(example)
    commands = {args[0]: args for args in readme_commands(example)}
    files = {name: example / option(commands[name], flag) for name, flag in DATA_OPTIONS.items()}
    train, test = read_gold(task, files["train"]), read_gold(task, files["evaluate"])
    assert files["annotate"].is_file()
    assert not set(train.values()) & set(test.values()), "a test text is in the training file"


@pytest.mark.slow
def test_the_readme_commands_run_and_the_gate_passes(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_home: Path
) -> None:
    folder = tmp_path / example.name
    # what a local run of the README left in the example (store, models, reports) stays behind
    shutil.copytree(
        example, folder, ignore=shutil.ignore_patterns("stillhouse.db*", "models", "reports")
    )
    task_file = folder / "task.toml"
    text = re.sub(r"(?m)^max_new_tokens = .*\n", "", task_file.read_text(encoding="utf-8"))
    assert text.count("\n[llm]\n") == 1, f"{example.name}/task.toml has no [llm] table"
    short = text.replace("\n[llm]\n", f"\n[llm]\nmax_new_tokens = {ANNOTATE_MAX_NEW_TOKENS}\n")
    task_file.write_text(short, encoding="utf-8")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("STILLHOUSE_HOME", str(cli_home))
    runner = CliRunner()
    annotate, train, evaluate, verdict = readme_commands(folder)

    small = with_option(annotate, "--limit", str(ANNOTATE_LIMIT))
    result = runner.invoke(app, [*with_option(small, "--model", SMALL_MODEL), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # a text the injection detector keeps from the LLM ([guard]) goes to review unannotated
    kept = summary.get("injection_queued", 0)
    assert summary["annotated"] + kept == ANNOTATE_LIMIT and summary["annotated"] >= 1

    for args in (train, evaluate):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    card = json.loads((folder / option(train, "--out") / "card.json").read_text(encoding="utf-8"))
    assert card["recipe"] == option(train, "--recipe")
    assert card["task"]["kind"] == load_task(folder).kind
    reports = folder / option(evaluate, "--out")
    assert (reports / "report.html").is_file()

    result = runner.invoke(app, [*verdict, "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 0 and report["passed"] is True, result.output
    task = load_task(folder)
    assert {row["rule"] for row in report["rules"]} == set(task.gate)
    assert all(row["measured"] is not None for row in report["rules"])
    # the command's verdict is the library's on the same results.json
    assert gate(task, read_results(folder / option(verdict, "--results"))).passed
