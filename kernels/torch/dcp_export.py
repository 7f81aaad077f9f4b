# `python3 -m kernels.torch.dcp_export DCP_DIR OUT`: the parameters of a sharded (DCP) checkpoint directory as raw
# float32 little-endian values in the flat layout's order (param_layout.py), read and written one tensor at a
# time, so memory holds one tensor, not the model. Prints {"shape", "step", "total"} as JSON. `deno task export`
# reads OUT slice by slice into Hugging Face safetensors (orchestrator/run/hf_export.ts).
# `python3 -m kernels.torch.dcp_export DCP_DIR OUT --flat`: the whole state (parameters, AdamW moments, step)
# converted to the TypeScript executors' flat format (checkpoint.py), held in memory: for tests and small models.
from __future__ import annotations

import json
import os
import sys

import torch

from .checkpoint import encode_state, write_atomic
from .dcp_checkpoint import read_flat, read_info, read_tensors
from .model_shape import ModelShape
from .param_layout import param_layout


def main(path: str, out: str, flat: bool) -> None:
    info = read_info(path)
    shape = ModelShape.from_json(info["shape"])
    layout = param_layout(shape)
    if flat:
        step, p, m, v = read_flat(path, layout)
        write_atomic(out, encode_state(shape, step, p, m, v))
        print(json.dumps({"shape": info["shape"], "step": step, "total": layout.total}))
        return
    names: dict[str, str] = info["names"]
    tmp = f"{out}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        for sl in layout.slices:
            key = f"model.{names[sl.name]}"
            t = read_tensors(path, [key])[key].to(torch.float32).contiguous().reshape(-1)
            if t.numel() != sl.length:
                raise ValueError(f"{path}: {key} holds {t.numel()} values, the layout's {sl.name} {sl.length}")
            f.write(t.numpy().astype("<f4", copy=False).tobytes())
    os.replace(tmp, out)
    print(json.dumps({"shape": info["shape"], "step": info["step"], "total": layout.total}))


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2], "--flat" in sys.argv[3:])
    except (OSError, ValueError, KeyError) as e:
        print(f"{sys.argv[1]}: cannot read the sharded checkpoint ({e})", file=sys.stderr)
        sys.exit(1)
