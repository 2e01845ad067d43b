"""Sentence vectors from a GGUF LLM's hidden states, with llama.cpp's embedding mode.

``Llama(path, embedding=True, pooling_type=MEAN)`` runs the model over a text and averages the
last hidden state (after the model's final norm) over its tokens. A 0.5B model costs about
1 GFLOP per token, ~1 s per short text on 2 cores (FEASIBILITY.md), so the model can be cut to
its first ``layers`` transformer blocks first (:func:`truncated_gguf`): a GGUF holding the token
embeddings, those blocks and the final norm, with ``block_count`` set to match. llama.cpp then
runs the shallow model at ``layers / block_count`` of the cost, and its hidden states are those
of that layer of the full model (middle layers often classify better than the last).

Each text is decoded alone (its vector does not depend on its batch mates, so a saved model
gives the same vectors when it loads) and cut to ``max_tokens`` tokens.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

Progress = Callable[[int, int], None]
_BLOCK = re.compile(r"blk\.(\d+)\.")


def block_count(path: Path) -> int:
    """The number of transformer blocks of the GGUF model at ``path`` (its ``block_count``)."""
    import gguf

    reader = gguf.GGUFReader(path)
    architecture = str(reader.fields["general.architecture"].contents())
    return int(reader.fields[f"{architecture}.block_count"].contents())


def truncated_gguf(base: Path, layers: int, target: Path) -> None:
    """Write to ``target`` the GGUF model ``base`` cut to its first ``layers`` blocks: every
    metadata field and tensor is copied as it is (quantized tensors stay quantized) except the
    blocks from ``layers`` on, which are left out, and ``<arch>.block_count``."""
    import gguf

    reader = gguf.GGUFReader(base)
    architecture = str(reader.fields["general.architecture"].contents())
    count_key = f"{architecture}.block_count"
    writer = gguf.GGUFWriter(str(target), architecture)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        if field.name == count_key:
            writer.add_key_value(count_key, layers, kind)
            continue
        sub_type = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub_type)
    kept = []
    for tensor in reader.tensors:
        block = _BLOCK.match(tensor.name)
        if block is not None and int(block[1]) >= layers:
            continue
        writer.add_tensor_info(
            tensor.name,
            tensor.data.shape,
            tensor.data.dtype,
            tensor.data.nbytes,
            tensor.tensor_type,
        )
        kept.append(tensor.data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for array in kept:
        writer.write_tensor_data(array)
    writer.close()


def cached_truncation(base: Path, base_sha256: str, layers: int) -> Path:
    """The GGUF of ``base`` cut to ``layers`` blocks, made once into the stillhouse cache
    (written to a temporary name and renamed, so a killed run leaves no half file); ``base``
    itself when ``layers`` is all of its blocks."""
    from stillhouse.llm.models import cache_dir

    if layers >= block_count(base):
        return base
    key = hashlib.sha256(f"{base_sha256}|{layers}".encode()).hexdigest()[:16]
    target = cache_dir() / "llm-embed" / f"{key}-{layers}-blocks.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        truncated_gguf(base, layers, partial)
        partial.replace(target)
    return target


class LlamaEmbedder:
    """``embed(texts)`` → unit-length float32 vectors of shape (n, hidden size): the mean of
    the last hidden state of the GGUF model at ``path`` over each text's first ``max_tokens``
    tokens."""

    def __init__(self, path: Path, max_tokens: int, threads: int | None = None) -> None:
        import llama_cpp

        self.path = Path(path)
        self.max_tokens = max_tokens
        from stillhouse.errors import Errors, fail

        workers = threads or os.cpu_count() or 1
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(self.path),
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                # one text per decode: n_batch is also where llama-cpp-python cuts a long text
                n_ctx=max_tokens,
                n_batch=max_tokens,
                n_ubatch=max_tokens,
                n_threads=workers,
                n_threads_batch=workers,
                verbose=False,
            )
        except (ValueError, RuntimeError) as error:
            raise fail(Errors.E754, path=self.path, detail=str(error)) from None
        self.dimension = int(self.llm.n_embd())

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Embeddings in the order of ``texts`` (an empty text is embedded as a space)."""
        result = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            vector = self.llm.embed(text or " ", normalize=True, truncate=True)
            result[row] = np.asarray(vector, dtype=np.float32).reshape(-1)
            if progress is not None:
                progress(row + 1, len(texts))
        return result

    def close(self) -> None:
        self.llm.close()
