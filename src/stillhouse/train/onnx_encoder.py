"""all-MiniLM-L6-v2 sentence embeddings with ONNX Runtime and `tokenizers`: no torch at inference.

The ONNX graph (see :mod:`stillhouse.train.export`) contains the transformer, the mean pooling
over non-padding tokens and the L2 normalisation of sentence-transformers' pipeline
(Transformer → Pooling(mean) → Normalize), so its output is the embedding itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

# sentence-transformers' max_seq_length for all-MiniLM-L6-v2 (sentence_bert_config.json); the
# tokenizer.json it ships pads and truncates to 128, which is overridden here as it does.
MAX_TOKENS = 256
DIMENSION = 384

Progress = Callable[[int, int], None]


class OnnxSentenceEncoder:
    """``embed(texts)`` → unit-length float32 vectors of shape (n, 384)."""

    def __init__(self, onnx_path: Path, tokenizer_path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._inputs = {node.name for node in self.session.get_inputs()}

    def embed(
        self, texts: Sequence[str], batch_size: int = 32, progress: Progress | None = None
    ) -> np.ndarray:
        """Embeddings in the order of ``texts``; batches are formed from texts of similar
        length (less padding), which does not change any text's vector beyond float rounding."""
        result = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            result[rows] = self._embed_batch([texts[i] for i in rows])
            if progress is not None:
                progress(min(start + batch_size, len(texts)), len(texts))
        return result

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (embeddings,) = self.session.run(
            None, {k: v for k, v in feeds.items() if k in self._inputs}
        )
        return embeddings
