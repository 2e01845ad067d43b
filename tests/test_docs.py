"""The documentation site builds as `make docs` builds it: MkDocs in strict mode (a broken link or
anchor, a page outside the nav, a missing snippet or an API reference that does not resolve fails
the build), offline (no page loads a script or stylesheet from elsewhere), with the CLI reference
generated from the commands themselves and the API reference from the docstrings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# what test_cli_help renders --help with: the text does not depend on the terminal
HELP_ENV = {"COLUMNS": "100", "TERMINAL_WIDTH": "100", "NO_COLOR": "1", "TERM": "dumb"}


def listed_commands() -> list[str]:
    """The command names in the Commands box of `stillhouse --help`."""
    help_text = subprocess.run(
        [sys.executable, "-m", "stillhouse.cli", "--help"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env={**os.environ, **HELP_ENV, "PYTHONIOENCODING": "utf-8"},
        check=True,
    ).stdout
    box = help_text.split("Commands", 1)[1]
    return re.findall(r"^│ ([a-z][a-z0-9-]*) ", box, flags=re.MULTILINE)


def test_the_readme_links_only_to_files_that_exist() -> None:
    """The README is the landing page: its links into docs/, bench/ and examples/ must land."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [target for target in targets if not re.match(r"[a-z]+:", target)]
    assert [target for target in local if not (ROOT / target).exists()] == []


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    return out


@pytest.mark.slow
def test_the_cli_reference_documents_every_command_of_stillhouse_help(site: Path) -> None:
    commands = listed_commands()
    assert len(commands) >= 10 and {"annotate", "train", "serve"} <= set(commands)
    page = (site / "cli.html").read_text(encoding="utf-8")
    missing = [name for name in commands if f'id="stillhouse-{name}"' not in page]
    assert missing == [], f"cli.html lacks {missing}"
    assert 'id="stillhouse-guard-scan"' in page  # sub-commands too
    # the options come from the commands' own help, e.g. gate's --baseline
    assert "for the no_significant_regression rule" in page


@pytest.mark.slow
def test_the_api_reference_is_generated_from_the_docstrings(site: Path) -> None:
    page = (site / "api.html").read_text(encoding="utf-8")
    for name in (
        "stillhouse.load_task",
        "stillhouse.annotate.annotate",
        "stillhouse.train.train",
        "stillhouse.evaluate.run.evaluate",
        "stillhouse.gate.gate",
        "stillhouse.serve.app.create_app",
        "stillhouse.guard.injection.scan",
    ):
        assert f'id="{name}"' in page, name
    # a sentence of evaluate()'s docstring, so the text is the code's own
    assert "on the gold-labelled examples of" in page
    assert ":class:" not in page and ":func:" not in page  # Sphinx roles shown as code


@pytest.mark.slow
def test_the_site_is_whole_and_offline(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    stage_pages = ("annotate", "review", "audit", "train", "evaluate", "gate", "serve", "monitor")
    assert {f"{name}.html" for name in stage_pages} <= {page.name for page in pages}
    assert (site / "bench" / "RESULTS.html").exists()  # the benchmarks' own record
    # each stage page repeats its benchmark summary (a snippet of benchmarks.md)
    assert "bench/serve.py" in (site / "serve.html").read_text(encoding="utf-8")
    assert "[start:" not in (site / "benchmarks.html").read_text(encoding="utf-8")
    remote = re.compile(r"<(?:script|img)[^>]+src=\"(?:https?:)?//|<link[^>]+href=\"(?:https?:)?//")
    fetching = [page.name for page in pages if remote.search(page.read_text(encoding="utf-8"))]
    assert fetching == [], f"pages that load from elsewhere: {fetching}"
    # search works from file://: the index is inlined as a script
    assert (
        (site / "search" / "search_index.js").read_text(encoding="utf-8").startswith("var __index")
    )
