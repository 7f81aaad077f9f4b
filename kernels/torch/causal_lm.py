# The executor's model: transformers' own decoder modules (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
# GPT2LMHeadModel), built on the meta device from the protocol's model shape (or a model.from config.json), with
# the Ulysses attention registered as their attention function (attention.py). Parameter names are Hugging Face's,
# so safetensors load and export by name.
#
# `CausalLm.forward` runs one rank's slice of a packed SP-group stream: embeddings, every decoder layer with the
# activation-checkpointing policy, the final norm, and the summed token loss by chunked cross-entropy (loss.py), so
# float32 logits of every token never exist at once. Policies (model.checkpointing, as the cost model assumes):
# "none" keeps every activation; "selective" recomputes only the attention kernel (never the exchanges); "full"
# keeps each layer's input and recomputes the layer (its exchanges included).
#
# The gpt family is GPT2LMHeadModel: its Conv1D weights are [in, out], the TypeScript GPT's layout, and its
# tanh-GELU, LayerNorm(1e-5), tied head and learned positions are that model's math (agreement tested within 1e-4).
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from . import attention
from .attention import UlyssesContext
from .loss import chunked_cross_entropy
from .model_shape import CHECKPOINTING, ModelShape
from .param_layout import ParamLayout

#: layout name of the TypeScript GPT -> GPT2LMHeadModel parameter name (per-layer keys after "h{i}.").
_GPT_LAYER = {
    "ln1.g": "ln_1.weight", "ln1.b": "ln_1.bias", "attn.w_qkv": "attn.c_attn.weight", "attn.b_qkv": "attn.c_attn.bias",
    "attn.w_o": "attn.c_proj.weight", "attn.b_o": "attn.c_proj.bias", "ln2.g": "ln_2.weight", "ln2.b": "ln_2.bias",
    "mlp.w_fc": "mlp.c_fc.weight", "mlp.b_fc": "mlp.c_fc.bias", "mlp.w_proj": "mlp.c_proj.weight",
    "mlp.b_proj": "mlp.c_proj.bias",
}
_GPT_TOP = {"wte": "transformer.wte.weight", "wpe": "transformer.wpe.weight", "lnf.g": "transformer.ln_f.weight",
            "lnf.b": "transformer.ln_f.bias"}


def hf_name(shape: ModelShape, layout_name: str) -> str:
    """The module parameter name of a flat-layout slice (llama layouts already use Hugging Face names)."""
    if shape.family != "gpt":
        return layout_name
    if layout_name in _GPT_TOP:
        return _GPT_TOP[layout_name]
    layer, rest = layout_name.split(".", 1)
    return f"transformer.h.{layer[1:]}.{_GPT_LAYER[rest]}"


def transformers_config(shape: ModelShape, config_json: dict[str, Any] | None = None) -> Any:
    """The transformers config of a shape: the model.from directory's config.json when given, else built from the
    shape (hf.hf_config for the llama family, GPT2Config for gpt); dropout off, our attention function."""
    import transformers

    cfg: transformers.PreTrainedConfig
    if shape.family == "gpt":
        cfg = transformers.GPT2Config(
            vocab_size=shape.vocab, n_positions=shape.max_seq, n_embd=shape.hidden, n_layer=shape.layers,
            n_head=shape.heads, n_inner=4 * shape.hidden, activation_function="gelu_new", resid_pdrop=0.0,
            embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True, bos_token_id=0,
            eos_token_id=0,
        )
    else:
        from . import hf

        full = {**shape.to_json(), "kvHeads": shape.kv_heads, "headDim": shape.head_dim, "intermediate":
                shape.intermediate, "ropeTheta": shape.rope_theta, "normEps": shape.norm_eps, "tieEmbeddings":
                shape.tied, "qkvBias": shape.qkv_bias, "oBias": shape.o_bias}
        d = dict(config_json) if config_json is not None else hf.hf_config(full)
        d["attention_dropout"] = 0.0
        d["max_position_embeddings"] = max(int(d.get("max_position_embeddings") or 0), shape.max_seq)
        mt = d.pop("model_type")
        for k in ("architectures", "torch_dtype", "dtype", "transformers_version"):
            d.pop(k, None)
        cfg = transformers.AutoConfig.for_model(mt, **d)
    attention.register()
    cfg._attn_implementation = attention.IMPLEMENTATION
    cfg.use_cache = False
    return cfg


class CausalLm(nn.Module):
    """A transformers causal LM's modules, run over one rank's slice of a packed stream."""

    def __init__(self, shape: ModelShape, config: Any, checkpointing: str = "none") -> None:
        super().__init__()
        import transformers

        if checkpointing not in CHECKPOINTING:
            raise ValueError(f"model.checkpointing must be one of {', '.join(CHECKPOINTING)}, got {checkpointing!r}")
        self.shape = shape
        self.checkpointing = checkpointing
        self.config = config
        lm = transformers.AutoModelForCausalLM.from_config(config)
        self.gpt = shape.family == "gpt"
        if self.gpt:
            self.transformer = lm.transformer
        else:
            self.model = lm.model
        self.lm_head = lm.lm_head
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embeddings().weight

    # ---------- structure ----------

    def embeddings(self) -> nn.Embedding:
        """The token embedding module."""
        emb: nn.Embedding = self.transformer.wte if self.gpt else self.model.embed_tokens
        return emb

    def blocks(self) -> list[nn.Module]:
        """The decoder layers, in order (FSDP units)."""
        return list(self.transformer.h if self.gpt else self.model.layers)

    def named_layout_params(self, layout: ParamLayout) -> Iterator[tuple[str, str, nn.Parameter]]:
        """(layout name, module name, parameter) for every slice of the flat layout, in layout order."""
        params = dict(self.named_parameters(remove_duplicate=False))
        for s in layout.slices:
            n = hf_name(self.shape, s.name)
            yield s.name, n, params[n]

    def after_to_empty(self, device: torch.device) -> None:
        """After `to_empty` from the meta device: ties the head to the embeddings again (to_empty replaces each
        module's parameters separately) and recomputes non-persistent buffers (RoPE frequencies)."""
        if self.config.tie_word_embeddings and self.lm_head.weight is not self.embeddings().weight:
            self.lm_head.weight = self.embeddings().weight
        if self.gpt:
            return
        rotary = self.model.rotary_emb
        with torch.device(device):
            fresh = type(rotary)(config=self.config)
        for name, buf in fresh.named_buffers():
            setattr(rotary, name, buf)

    # ---------- forward ----------

    def _layer(self, block: nn.Module, x: torch.Tensor, rope: Any, ctx: UlyssesContext,
               positions: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = (block(x, flexsp=ctx) if self.gpt
                             else block(x, position_embeddings=rope, position_ids=positions, flexsp=ctx))
        return out

    @staticmethod
    def _compute_dtype(x: torch.Tensor) -> torch.Tensor:
        """Under autocast (bf16 replicas), a bf16 residual stream as under FSDP2's policy, so layer inputs are saved
        in bf16 and RoPE's cos/sin (cast to the stream's dtype) keep q and k in bf16."""
        dev = x.device.type
        return x.to(torch.get_autocast_dtype(dev)) if torch.is_autocast_enabled(dev) else x

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor,
                ctx: UlyssesContext) -> torch.Tensor:
        """The summed float32 token loss of this rank's slice (targets -1 ignored); differentiable."""
        return chunked_cross_entropy(self.hidden(tokens, positions, ctx), self.lm_head.weight, targets)

    def hidden(self, tokens: torch.Tensor, positions: torch.Tensor, ctx: UlyssesContext) -> torch.Tensor:
        """The final-norm hidden states `[T, hidden]` of this rank's slice (logits are these times the head)."""
        ids, pos = tokens.unsqueeze(0), positions.unsqueeze(0)
        ctx.checkpoint_kernel = self.checkpointing == "selective"
        if self.gpt:
            t = self.transformer
            x = self._compute_dtype(t.wte(ids) + t.wpe(pos))
            rope = None
        else:
            x = self._compute_dtype(self.model.embed_tokens(ids))
            rope = self.model.rotary_emb(x, position_ids=pos)
        for block in self.blocks():
            if self.checkpointing == "full":
                x = checkpoint(self._layer, block, x, rope, ctx, pos, use_reentrant=False)
            else:
                x = self._layer(block, x, rope, ctx, pos)
        out: torch.Tensor = (self.transformer.ln_f if self.gpt else self.model.norm)(x)[0]
        return out


#: A source of starting tensors: (layout name, module name, rows) -> rows [a, b) of dim 0 (all rows when None).
Source = Callable[[str, str, "tuple[int, int] | None"], torch.Tensor]


def fill(model: CausalLm, layout: ParamLayout, get: Source,
         rows_of: Callable[[nn.Parameter], "tuple[int, int] | None"],
         place: Callable[[torch.Tensor, nn.Parameter], torch.Tensor]) -> None:
    """Fills every parameter (after `to_empty`) from host tensors, one at a time: only the rows this rank holds
    (`rows_of(param)`: all of them for replicas, its dim-0 FSDP shard under ZeRO) are asked of `get`, then `place`d
    on the device."""
    with torch.no_grad():
        for lname, mname, p in model.named_layout_params(layout):
            local = p.to_local() if hasattr(p, "to_local") else p
            part = get(lname, mname, rows_of(p)).to(torch.float32)
            local.copy_(place(part.reshape(-1, *p.shape[1:]) if p.dim() > 1 else part.reshape(-1), p))
