"""`stillhouse --help` and every command's --help are what users read: they change only on purpose.

Each help text is compared byte for byte with its snapshot in tests/cli_help/ (``stillhouse.txt``
for the app, ``COMMAND.txt`` per command, ``commands.txt`` for the command list in --help order).
The help is rendered in a subprocess with a fixed width, no colour and UTF-8 output, so the text does
not depend on the terminal or the CI machine. After a deliberate change to an option, a help string
or the list of commands, rewrite the snapshots and commit their diff:

    .venv/bin/python tests/test_cli_help.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SNAPSHOTS = Path(__file__).parent / "cli_help"
COMMAND_LIST = SNAPSHOTS / "commands.txt"
APP = "stillhouse"  # the snapshot name of the app's own --help
REGENERATE = ".venv/bin/python tests/test_cli_help.py"

# Only what Python needs to start: rich, typer and click read FORCE_COLOR, GITHUB_ACTIONS,
# PY_COLORS, TYPER_USE_RICH, TERMINAL_WIDTH, COLUMNS, TTY_COMPATIBLE and more from the environment.
PASSED_THROUGH = ("PATH", "PYTHONPATH", "HOME", "SYSTEMROOT")
FIXED = {
    "COLUMNS": "100",  # rich's console width when stdout is not a terminal
    "TERMINAL_WIDTH": "100",  # typer's help width (typer.rich_utils.MAX_WIDTH)
    "NO_COLOR": "1",
    "TERM": "dumb",
    "PYTHONIOENCODING": "utf-8",  # rich draws ASCII boxes on a non-UTF-8 stdout
}

# One interpreter renders every help text (importing stillhouse takes most of a second, eleven
# times over was 8 s of CPU). A subprocess, not CliRunner in pytest's process, because typer reads
# the environment when it is imported; test_python_m_stillhouse_cli_prints_the_same_help checks
# that this rendering is what the real command prints.
RENDER_HELP = """
import json, sys
import typer
from typer.testing import CliRunner
from stillhouse.cli import app

prog_name, app_name = sys.argv[1:]
commands = list(typer.main.get_command(app).commands)  # registration order, as --help lists them
runner = CliRunner()
help = {}
for name in [None, *commands]:
    result = runner.invoke(app, [name, "--help"] if name else ["--help"], prog_name=prog_name)
    help[name or app_name] = {"exit_code": result.exit_code, "output": result.output}
json.dump({"commands": commands, "help": help}, sys.stdout)
"""
PROG_NAME = "python -m stillhouse.cli"  # what click calls the command when run as in the tests


def help_environment() -> dict[str, str]:
    """The environment every help text is rendered in."""
    passed = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    return {**passed, **FIXED}


def render_help() -> dict[str, Any]:
    """``{"commands": [...], "help": {name: {"exit_code", "output"}}}`` of the CLI as it is now."""
    rendered = subprocess.run(
        [sys.executable, "-c", RENDER_HELP, PROG_NAME, APP],
        env=help_environment(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=True,
    )
    return json.loads(rendered.stdout)


def snapshot_commands() -> list[str]:
    """The commands `stillhouse --help` lists, in order, as committed (none before the first run)."""
    if not COMMAND_LIST.exists():
        return []
    return COMMAND_LIST.read_text(encoding="utf-8").split()


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    return render_help()


def test_the_app_has_exactly_the_snapshot_commands_in_order(rendered: dict[str, Any]) -> None:
    assert rendered["commands"] == snapshot_commands(), (
        f"`stillhouse --help` lists other commands than {COMMAND_LIST}: a command was added, "
        "removed, renamed or moved (registration order is the import order in "
        f"src/stillhouse/cli/__init__.py). If that was on purpose, run `{REGENERATE}` and commit "
        "the snapshot diff."
    )


def test_every_snapshot_belongs_to_a_command() -> None:
    expected = {f"{name}.txt" for name in [APP, *snapshot_commands()]}
    present = {path.name for path in SNAPSHOTS.glob("*.txt")} - {COMMAND_LIST.name}
    assert present == expected, f"stale or missing snapshots in {SNAPSHOTS}: run `{REGENERATE}`"


@pytest.mark.parametrize("name", [APP, *snapshot_commands()])
def test_help_text_is_unchanged(rendered: dict[str, Any], name: str) -> None:
    command = "stillhouse" if name == APP else f"stillhouse {name}"
    assert name in rendered["help"], f"`{command}` is gone: see the test of the command list"
    result = rendered["help"][name]
    assert result["exit_code"] == 0, result["output"]
    snapshot = SNAPSHOTS / f"{name}.txt"
    assert result["output"] == snapshot.read_text(encoding="utf-8"), (
        f"`{command} --help` differs from {snapshot}. Help text is part of the CLI's interface and "
        f"changes only on purpose: if this change is deliberate, run `{REGENERATE}` and commit the "
        "snapshot diff; otherwise an edit to the CLI changed an option, a default or a help string "
        "by accident."
    )


def test_no_help_text_loses_words_to_rich_markup() -> None:
    """typer renders help as rich markup, where `[gate]` is a style tag and vanishes: write
    `\\[gate]` in the Python string. Each help text must render to its own words."""
    import typer
    from rich.text import Text

    from stillhouse.cli import app

    command = typer.main.get_command(app)
    texts = {"stillhouse": command.help}
    for name, sub in command.commands.items():  # type: ignore[attr-defined]
        texts[name] = sub.help
        texts.update(
            {f"{name} {param.opts[0]}": getattr(param, "help", None) for param in sub.params}
        )
    lost = {
        where: Text.from_markup(text).plain
        for where, text in texts.items()
        if text and Text.from_markup(text).plain != text.replace("\\[", "[")
    }

    assert not lost, f"help text that rich renders without some of its words: {lost}"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("gate", "task.toml [gate] against"),
        ("predict", "[input] fields"),
        ("evaluate", "STAGE[@A]"),
    ],
)
def test_bracketed_words_are_in_the_rendered_help(
    rendered: dict[str, Any], name: str, words: str
) -> None:
    assert words in rendered["help"][name]["output"]


def test_python_m_stillhouse_cli_prints_the_same_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stillhouse.cli", "--help"],
        env=help_environment(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (SNAPSHOTS / f"{APP}.txt").read_text(encoding="utf-8"), (
        "The real `python -m stillhouse.cli --help` prints other text than RENDER_HELP renders: "
        "fix RENDER_HELP (or the environment in FIXED) before trusting the other snapshots."
    )


def write_snapshots() -> None:
    """Rewrite every snapshot from the CLI as it is now (and drop those of removed commands)."""
    current = render_help()
    for name, result in current["help"].items():
        if result["exit_code"] != 0:
            raise SystemExit(f"--help of {name} exited {result['exit_code']}:\n{result['output']}")
    SNAPSHOTS.mkdir(exist_ok=True)
    for stale in SNAPSHOTS.glob("*.txt"):
        stale.unlink()
    COMMAND_LIST.write_text("".join(f"{name}\n" for name in current["commands"]), encoding="utf-8")
    for name, result in current["help"].items():
        (SNAPSHOTS / f"{name}.txt").write_text(result["output"], encoding="utf-8")
    print(f"wrote {len(current['help'])} help snapshots and {COMMAND_LIST} to {SNAPSHOTS}")


if __name__ == "__main__":
    write_snapshots()
