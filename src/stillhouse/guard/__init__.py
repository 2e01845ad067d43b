"""guard: what stands between the data and the LLM.

- :mod:`stillhouse.guard.privacy`: personal data found before a text is sent to a remote
  OpenAI-compatible server, then pseudonymized, redacted or the text blocked (``[privacy]``);
- :mod:`stillhouse.guard.pii_recognizers`: the tuned Presidio analyzer it uses;
- :mod:`stillhouse.guard.injection`: the prompt-injection detector shipped in ``detector/``
  (``scan(texts)``, ``stillhouse guard scan``) and how it is rebuilt;
- :mod:`stillhouse.guard.injection_corpus`: the corpus it is trained and measured on.

This package imports nothing on its own: import the module you need (``task.py`` reads the
entity names of ``pii_recognizers`` while the rest of the package may not be loaded yet).
``stillhouse.guard.scan`` is the one name it offers, loaded on first use.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "scan":  # loaded on first use: importing the package stays free
        from stillhouse.guard.injection import scan

        return scan
    raise AttributeError(f"module 'stillhouse.guard' has no attribute {name!r}")
