"""PEFT LoRA weights → llama.cpp: a GGUF LoRA adapter, or a merged and re-quantized GGUF model.

Names, shapes and layouts follow llama.cpp's ``convert_lora_to_gguf.py``: ``general.type``
``adapter``, ``adapter.type`` ``lora``, ``adapter.lora.alpha``; for each adapted projection
``blk.N.<gguf name>.weight.lora_a`` (PEFT's ``lora_A``, shape rank × in) and ``.lora_b``
(``lora_B``, out × rank), untransposed. llama.cpp's `llama` architecture stores the query and
key projections with their rows permuted for its RoPE layout (transformers undoes this when it
loads a GGUF), so ``lora_b`` of ``q_proj``/``k_proj`` gets the same row permutation; `qwen2`
has none. llama.cpp scales the product by alpha / rank, as PEFT does.

:func:`write_merged` writes the base GGUF with the adapted tensors replaced by their merged
fp32 values (base dequantized + alpha / rank · B A), everything else copied as is, and
:func:`quantize` re-quantizes that file with ``llama_model_quantize`` (Q8_0 / Q4_K_M).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stillhouse.errors import Errors, fail

GGUF_NAMES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
ARCHITECTURES = ("llama", "qwen2")
_ROPE_PERMUTED = {"llama": ("q_proj", "k_proj")}
_PEFT_NAME = re.compile(r"layers\.(\d+)\.[a-z_]+\.([a-z_]+)\.lora_([AB])\.")
QUANTIZE_FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}


@dataclass(frozen=True)
class BaseLayout:
    """What the conversion needs to know about the base GGUF."""

    architecture: str
    n_head: int
    n_head_kv: int


def base_layout(gguf_path: Path) -> BaseLayout:
    """Architecture and head counts of a GGUF model; E733 for an architecture not handled."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)

    def value(key: str) -> Any:
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    architecture = str(value("general.architecture"))
    if architecture not in ARCHITECTURES:
        raise fail(
            Errors.E733, path=gguf_path, architecture=architecture, known=", ".join(ARCHITECTURES)
        )
    n_head = int(value(f"{architecture}.attention.head_count"))
    n_head_kv = int(value(f"{architecture}.attention.head_count_kv") or n_head)
    return BaseLayout(architecture, n_head, n_head_kv)


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's ``LlamaModel.permute`` on the rows (output dimension)."""
    shape = weights.shape
    return (
        weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:])
        .swapaxes(1, 2)
        .reshape(shape)
    )


def adapter_tensors(
    state: dict[str, Any], layout: BaseLayout
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """PEFT LoRA weights (``name -> tensor``, as ``named_parameters`` gives them) as
    ``{"blk.N.attn_q.weight": (lora_a, lora_b)}`` in llama.cpp's layout (fp32)."""
    pairs: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for name, tensor in state.items():
        match = _PEFT_NAME.search(name)
        if match is None:
            continue
        layer, module, which = int(match[1]), match[2], match[3]
        if module not in GGUF_NAMES:
            raise fail(Errors.E734, module=module, known=", ".join(GGUF_NAMES))
        array = tensor.detach().cpu().float().numpy() if hasattr(tensor, "detach") else tensor
        pairs.setdefault((layer, module), {})[which] = np.ascontiguousarray(array, np.float32)
    result = {}
    for (layer, module), pair in sorted(pairs.items()):
        lora_a, lora_b = pair["A"], pair["B"]
        if module in _ROPE_PERMUTED.get(layout.architecture, ()):
            heads = layout.n_head if module == "q_proj" else layout.n_head_kv
            lora_b = np.ascontiguousarray(_permute(lora_b, heads))
        result[f"blk.{layer}.{GGUF_NAMES[module]}.weight"] = (lora_a, lora_b)
    return result


def write_adapter(
    path: Path, tensors: dict[str, tuple[np.ndarray, np.ndarray]], layout: BaseLayout, alpha: float
) -> None:
    """Write a GGUF LoRA adapter (fp32 tensors) to ``path`` (via a temporary file)."""
    import gguf

    temporary = path.with_name(f".{path.name}.tmp")
    writer = gguf.GGUFWriter(str(temporary), layout.architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for name, (lora_a, lora_b) in tensors.items():
        writer.add_tensor(f"{name}.lora_a", lora_a)
        writer.add_tensor(f"{name}.lora_b", lora_b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(temporary, path)


def write_merged(
    base: Path,
    tensors: dict[str, tuple[np.ndarray, np.ndarray]],
    alpha: float,
    path: Path,
    *,
    dequantize_all: bool = False,
) -> None:
    """The base GGUF with each adapted weight replaced by base + alpha / rank · B A (fp32);
    with ``dequantize_all`` every quantized weight is written in fp32 too (a float model that
    llama.cpp runs without quantizing activations: what transformers computes)."""
    import gguf
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(base)
    architecture = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(str(path), architecture)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub_type = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub_type)
    data: list[np.ndarray] = []
    for tensor in reader.tensors:
        quantized = tensor.tensor_type not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16)
        if tensor.name in tensors or (dequantize_all and quantized):
            merged = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
            if tensor.name in tensors:
                lora_a, lora_b = tensors[tensor.name]
                merged = merged + (alpha / lora_a.shape[0]) * (lora_b @ lora_a)
            array = np.ascontiguousarray(merged, np.float32)
            writer.add_tensor_info(
                tensor.name, array.shape, array.dtype, array.nbytes, gguf.GGMLQuantizationType.F32
            )
        else:
            array = tensor.data
            writer.add_tensor_info(
                tensor.name, array.shape, array.dtype, array.nbytes, tensor.tensor_type
            )
        data.append(array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for array in data:
        writer.write_tensor_data(array)
    writer.close()


def quantize(source: Path, target: Path, kind: str, threads: int | None = None) -> None:
    """Re-quantize a GGUF model in-process with llama.cpp (``kind``: q8_0 or q4_k_m)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANTIZE_FTYPES[kind])
    params.nthread = threads or os.cpu_count() or 1
    params.allow_requantize = True
    status = llama_cpp.llama_model_quantize(
        str(source).encode("utf-8"), str(target).encode("utf-8"), params
    )
    if status != 0:
        raise fail(Errors.E735, path=source, kind=kind, status=status)
