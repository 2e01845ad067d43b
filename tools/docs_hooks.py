"""MkDocs hooks for the documentation site (``mkdocs.yml``: ``hooks:``): build-time glue only.

- The CLI reference is generated from the commands themselves by typer's own Markdown writer
  (what ``typer stillhouse.cli utils docs`` prints: every command, argument and option with its
  help): the line ``<!-- cli-reference -->`` of a page becomes it, headings one level down. It
  goes through the page's Markdown, so its headings are anchors that strict mode checks.
  (mkdocs-click cannot be used: it recognises options by ``click.Option``, and typer ≥ 0.29
  builds its commands on its own copy of click, so every options table came out empty.)
- ``bench/RESULTS.md`` (and the images beside it that it shows) are published as they are, at
  ``bench/`` in the site, so the pages link to the benchmarks' own record rather than a copy.
- The docstrings name code with Sphinx roles (``:class:`Store```); the API reference shows the
  name as code without the role (and without the ``~`` that shortens it in Sphinx).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer
from mkdocs.structure.files import File, Files

CLI_MARKER = "<!-- cli-reference -->"
BENCH_FILES = ("RESULTS.md", "*.svg", "*.png")
SPHINX_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):(<code>)~?")


def cli_reference() -> str:
    """The Markdown typer writes for ``stillhouse``: usage, arguments and options per command."""
    from typer.cli import MARKUP_MODE_KEY, get_docs_for_click

    from stillhouse.cli import app  # imported here: the import registers every command

    command = typer.main.get_command(app)
    context = typer.Context(
        command, info_name="stillhouse", obj={MARKUP_MODE_KEY: app.rich_markup_mode}
    )
    markdown = get_docs_for_click(obj=command, ctx=context, name="stillhouse")
    # one level down: the page's own title and sections stay above the commands
    return re.sub(r"^(#+) ", r"#\1 ", markdown, flags=re.MULTILINE)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Put the generated CLI reference where a page asks for it."""
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return markdown


def on_files(files: Files, config: Any) -> Files:
    """Add bench/RESULTS.md and its images (from the repository root) to the site's files."""
    root = Path(config.config_file_path).parent
    for pattern in BENCH_FILES:
        for path in sorted((root / "bench").glob(pattern)):
            files.append(
                File(
                    path.relative_to(root).as_posix(),
                    src_dir=str(root),
                    dest_dir=config.site_dir,
                    use_directory_urls=config.use_directory_urls,
                )
            )
    return files


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    """Drop the Sphinx roles in front of inline code (docstrings rendered by mkdocstrings)."""
    return SPHINX_ROLE.sub(r"\1", html)
