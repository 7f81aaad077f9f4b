# Tiny random Hugging Face checkpoints for the llama-family tests, made by transformers itself (save_pretrained into
# a temporary directory): transformers is the independent oracle the flexsp model is compared against.
from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

#: 4 query heads, 2 K/V heads (grouped-query attention), 2 layers: small enough for seconds on one core.
TINY_GQA: dict[str, Any] = {
    "vocab_size": 128, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
}


def save_tiny(model_type: str, directory: str | None = None, seed: int = 0, **over: Any) -> tuple[str, Any]:
    """Saves a random tiny model of `model_type` (llama, mistral, qwen2); returns (directory, the float32 model)."""
    import transformers

    cls = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "mistral": ("MistralConfig", "MistralForCausalLM"),
           "qwen2": ("Qwen2Config", "Qwen2ForCausalLM")}[model_type]
    cfg = getattr(transformers, cls[0])(**{**TINY_GQA, **over})
    torch.manual_seed(seed)
    model = getattr(transformers, cls[1])(cfg).float().eval()
    with torch.no_grad():  # random biases and norm gains, so a mix-up of them cannot hide
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    d = directory or tempfile.mkdtemp(prefix=f"flexsp-{model_type}-")
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d)
    return d, model


def hf_mean_loss(model: Any, sequences: list[list[int]]) -> float:
    """transformers' mean next-token loss over `sequences`, each run on its own (the packed batch's meaning)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for s in sequences:
            ids = torch.tensor([s])
            out = model(input_ids=ids, labels=ids)
            total += float(out.loss) * (len(s) - 1)
            count += len(s) - 1
    return total / count
