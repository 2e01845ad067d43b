"""Nothing a user types can destroy data: every case of the table in cases.py runs the real
`stillhouse` command on its own copy of a real workspace and must keep the invariants:

- the expected exit code (2 bad input, 1 a failing gate, 0 success, 130 interrupted);
- no traceback on stdout or stderr (in this process: no exception but SystemExit);
- the message names the culprit (path, line, key, option, value) and carries the error code;
- every file that existed is byte-identical afterwards and no file or folder appeared, except
  the command's declared outputs (no empty stillhouse.db, no temporary file or folder left);
- the store still passes ``PRAGMA integrity_check``, with the same row count in every table
  unless the command writes the store.

A new command (serve, review, guard, monitor) joins by adding its cases to cases.py.
"""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import pytest
from cases import CASES, Case
from workspace import (
    STORE_FILES,
    Outcome,
    Workspace,
    build_template,
    changed_entries,
    copy_template,
    invoke,
    private_mounts_available,
    run_in_mounts,
    run_process,
    snapshot,
    store_state,
)

REPO = Path(__file__).resolve().parents[2]
TRAIN_ROWS = 60
TEST_ROWS = 40


@pytest.fixture(scope="session")
def in_process_env(cli_home: Path) -> dict[str, str]:
    """What CliRunner sets in os.environ for an in-process run (one STILLHOUSE_HOME a session)."""
    return {"STILLHOUSE_HOME": str(cli_home), "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


@pytest.fixture(scope="session")
def template(
    tmp_path_factory: pytest.TempPathFactory,
    write_task,
    write_rows,
    nusax_rows,
    in_process_env: dict[str, str],
) -> Workspace:
    """The workspace every case starts from, built once (see workspace.py)."""
    with (REPO / "examples" / "nusax-sentiment-en" / "train.csv").open(
        encoding="utf-8", newline=""
    ) as handle:
        train_rows = list(csv.DictReader(handle))[:TRAIN_ROWS]
    root = tmp_path_factory.mktemp("bad-input-template") / "ws"
    return build_template(
        root, write_task, train_rows, nusax_rows[:TEST_ROWS], write_rows, in_process_env
    )


@pytest.fixture(scope="session")
def private_mounts(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The empty string when this machine lets a test make read-only and full file systems,
    else why not."""
    return private_mounts_available(tmp_path_factory.mktemp("mount-probe"))


def slow(case: Case) -> bool:
    return case.slow or case.run != "cli"


def run_case(
    case: Case, ws: Workspace, in_process_env: dict[str, str], process_env: dict[str, str]
) -> Outcome:
    argv = [ws.expand(word) for word in shlex.split(case.argv)]
    extra = {name: ws.expand(value) for name, value in case.env.items()}
    if case.run == "cli":
        return invoke(argv, {**in_process_env, **extra})
    env = {**process_env, **extra}
    if case.run == "process":
        return run_process(argv, env, ws.root, timeout=300)
    if case.run == "mounts":
        return run_in_mounts(ws.expand(case.prepare), argv, env, ws.root, timeout=300)
    assert case.run == "fault" and case.fault is not None, case.run
    return case.fault(ws, argv, env)


def broken_invariants(
    case: Case,
    ws: Workspace,
    outcome: Outcome,
    before: dict[str, str],
    after: dict[str, str],
    store_before: tuple[str, dict[str, int]] | None,
    store_after: tuple[str, dict[str, int]] | None,
) -> list[str]:
    """Every invariant the run broke, in words (empty: the case passes)."""
    problems = []
    expected = case.exit if isinstance(case.exit, tuple) else (case.exit,)
    if outcome.code not in expected:
        problems.append(f"exit code {outcome.code}, expected {case.exit}")
    if "Traceback" in outcome.stdout + outcome.stderr or outcome.traceback:
        problems.append("a traceback reached the user")
    # an error's message is on stderr; with several acceptable exits it is checked only when
    # the command refused (exit 2)
    error_expected = 2 in expected
    message_applies = len(expected) == 1 or outcome.code == 2
    shown = outcome.stderr if error_expected else outcome.stdout + outcome.stderr
    if message_applies:
        if error_expected and "error" not in outcome.stderr.lower():
            problems.append("no error message on stderr")
        for fragment in case.says:
            options = (fragment,) if isinstance(fragment, str) else fragment
            wanted = [ws.expand(option) for option in options]
            if not any(option in shown for option in wanted):
                problems.append(f"the message does not say {' or '.join(map(repr, wanted))}")
        if case.code is not None:
            codes = (case.code,) if isinstance(case.code, str) else case.code
            if not any(f"[{code}]" in outcome.stderr for code in codes):
                problems.append(f"the message has not the code {' or '.join(codes)}")
    for fragment in case.not_says:
        if ws.expand(fragment) in outcome.stdout + outcome.stderr:
            problems.append(f"the message says {ws.expand(fragment)!r}, which it must not")
    declared = [ws.path(place).relative_to(ws.root).as_posix() for place in case.outputs]
    allowed = declared + ([f"task/{name}" for name in STORE_FILES] if case.store_writes else [])
    problems += [
        f"file {change} (not a declared output)"
        for change in changed_entries(before, after, allowed)
    ]
    if outcome.code == 0 and 0 in expected:
        problems += [f"declared output {place} missing" for place in declared if place not in after]
    if store_before is not None and store_before[0] == "ok":
        if store_after is None:
            problems.append("the store is no longer a readable SQLite file")
        else:
            if store_after[0] != "ok":
                problems.append(f"PRAGMA integrity_check: {store_after[0]}")
            if not case.store_writes and store_after[1] != store_before[1]:
                problems.append(f"store rows changed: {store_before[1]} -> {store_after[1]}")
    if case.check is not None:
        try:
            case.check(ws, outcome)
        except AssertionError as error:
            problems.append(str(error))
    return problems


@pytest.mark.parametrize(
    "case",
    [
        # a subprocess (mounts, faults) costs seconds: those are slow like the marked ones
        pytest.param(case, id=case.id, marks=[pytest.mark.slow] if slow(case) else [])
        for case in CASES
    ],
)
def test_bad_input_keeps_every_invariant(
    case: Case,
    template: Workspace,
    tmp_path: Path,
    in_process_env: dict[str, str],
    cli_env: dict[str, str],
    private_mounts: str,
) -> None:
    if case.run == "mounts" and private_mounts:
        pytest.skip(f"needs a private mount namespace (root, unshare): {private_mounts}")
    ws = copy_template(template, tmp_path / "ws")
    if case.setup is not None:
        case.setup(ws)
    store_before = store_state(ws["store"])  # before the snapshot: SQLite's own files settle
    before = snapshot(ws.root)
    outcome = run_case(case, ws, in_process_env, cli_env)
    after = snapshot(ws.root)
    store_after = store_state(ws["store"])
    problems = broken_invariants(case, ws, outcome, before, after, store_before, store_after)
    defect = f" (defect {case.defect} of the issue)" if case.defect else ""
    assert not problems, f"{case.id}{defect}:\n- " + "\n- ".join(problems) + "\n" + outcome.text


def test_the_table_covers_every_command_and_enough_cases() -> None:
    commands = {case.command for case in CASES}
    for command in (
        "init",
        "annotate",
        "export",
        "models",
        "demo",
        "evaluate",
        "gate",
        "train",
        "predict",
        "audit",
        "review",
        "guard",
    ):
        assert command in commands, f"no case for {command}"
    assert len(CASES) >= 200
    defects = {case.defect for case in CASES if case.defect}
    assert defects >= {str(number) for number in range(1, 18)}, defects
