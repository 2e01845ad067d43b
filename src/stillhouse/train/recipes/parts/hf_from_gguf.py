"""A GGUF model as a transformers folder (fp32), made once per GGUF file and cached.

``AutoModelForCausalLM.from_pretrained(dir, gguf_file=NAME)`` dequantizes the GGUF weights
(SmolLM2-135M ~25 s, Qwen2.5-0.5B ~45 s on two cores); the result is saved as an ordinary
transformers folder under ``$STILLHOUSE_HOME/hf/<sha256 of the GGUF>`` (default
``~/.cache/stillhouse``), written to a temporary sibling and renamed into place, so a second
load takes about a second. The tokenizer comes from the same GGUF file.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import uuid
from pathlib import Path

MARKER = "stillhouse-gguf-sha256.txt"


def hf_folder(gguf_path: Path, sha256: str) -> Path:
    """The cached transformers folder for ``gguf_path`` (whose sha256 is ``sha256``), made if
    it is not there yet."""
    from stillhouse.llm.models import cache_dir

    folder = cache_dir() / "hf" / sha256[:16]
    if (folder / MARKER).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        convert(gguf_path, temporary)
        (temporary / MARKER).write_text(sha256 + "\n", encoding="utf-8")
        if (folder / MARKER).is_file():  # another process made it meanwhile
            return folder
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


def convert(gguf_path: Path, target: Path) -> None:
    """Dequantize ``gguf_path`` into a fp32 transformers folder ``target`` (model + tokenizer)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    source, name = str(gguf_path.parent), gguf_path.name
    # transformers' GGUF reader draws its own tqdm bar, which disable_progress_bar() misses and
    # which would break the caller's rich display; errors still raise
    with contextlib.redirect_stderr(io.StringIO()):
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=name, dtype=torch.float32)
    # a GGUF-loaded model only saves once it forgets it was quantized (FEASIBILITY.md)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(source, gguf_file=name).save_pretrained(str(target))
