"""Independent oracles for the data tests: the Rust `tokenizers` package, pyarrow and megatron-core.

Test-only (never on flexsp's product path). Each subcommand reads a JSON request on stdin and writes a JSON reply.
"""

import json
import os
import sys
import warnings


def train_bpe(req: dict) -> dict:
    """Trains a small BPE (`style`: bytelevel = GPT-2-like, metaspace = Llama-like with a BOS template)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    out = req["out"]
    os.makedirs(out, exist_ok=True)
    style = req["style"]
    if style == "bytelevel":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=req["vocab"],
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train([req["corpus"]], trainer)
        config = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_eos_token": True}
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(
            vocab_size=req["vocab"],
            special_tokens=["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)],
        )
        tok.train([req["corpus"]], trainer)
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
        config = {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "add_eos_token": True}
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)
    return {"vocab": tok.get_vocab_size(with_added_tokens=True)}


def shift_ids(req: dict) -> dict:
    """Rewrites a BPE tokenizer.json so every id is `shift` higher (ids past 65,535: uint32 token files)."""
    with open(os.path.join(req["src"], "tokenizer.json")) as f:
        j = json.load(f)
    shift = req["shift"]
    vocab = {t: i + shift for t, i in j["model"]["vocab"].items()}
    for i in range(shift):
        vocab[f"<unused_{i}>"] = i
    j["model"]["vocab"] = vocab
    for a in j.get("added_tokens", []):
        a["id"] += shift
    pp = j.get("post_processor")
    if pp and pp.get("special_tokens"):
        for v in pp["special_tokens"].values():
            v["ids"] = [x + shift for x in v["ids"]]
    os.makedirs(req["out"], exist_ok=True)
    with open(os.path.join(req["out"], "tokenizer.json"), "w") as f:
        json.dump(j, f)
    with open(os.path.join(req["src"], "tokenizer_config.json")) as f:
        cfg = f.read()
    with open(os.path.join(req["out"], "tokenizer_config.json"), "w") as f:
        f.write(cfg)
    return {}


def encode(req: dict) -> dict:
    """Token ids of each text with the `tokenizers` batch encoder, plus BOS/EOS as tokenizer_config says."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(req["tokenizer"], "tokenizer.json"))
    with open(os.path.join(req["tokenizer"], "tokenizer_config.json")) as f:
        cfg = json.load(f)
    bos = tok.token_to_id(cfg["bos_token"]) if cfg.get("add_bos_token") else None
    eos = tok.token_to_id(cfg["eos_token"]) if cfg.get("add_eos_token") else None
    out = []
    for e in tok.encode_batch(req["texts"], add_special_tokens=True):
        ids = list(e.ids)
        if bos is not None and (not ids or ids[0] != bos):
            ids.insert(0, bos)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
        out.append(ids)
    return {"ids": out, "vocab": tok.get_vocab_size(with_added_tokens=True)}


def write_parquet(req: dict) -> dict:
    """Writes texts (and an int column) as Parquet with the given codec and row-group size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": list(range(len(req["texts"]))), req["column"]: req["texts"]})
    pq.write_table(table, req["path"], compression=req["codec"], row_group_size=req["row_group_size"])
    return {"row_groups": pq.ParquetFile(req["path"]).num_row_groups}


def megatron_build(req: dict) -> dict:
    """Writes datasets (`jobs`: prefix, dtype, documents) with megatron-core's own IndexedDatasetBuilder."""
    import numpy
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    for job in req["jobs"]:
        b = IndexedDatasetBuilder(job["prefix"] + ".bin", dtype=getattr(numpy, job["dtype"]))
        for doc in job["documents"]:
            # A document of one or more sequences (as Megatron's sentence split makes), added item by item.
            for seq in doc:
                b.add_item(torch.tensor(seq, dtype=torch.int64))
            b.end_document()
        b.finalize(job["prefix"] + ".idx")
    return {}


def megatron_read(req: dict) -> dict:
    """Reads datasets (`prefixes`) with megatron-core's IndexedDataset: sequences, dtype, document indices."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    out = []
    for prefix in req["prefixes"]:
        ds = IndexedDataset(prefix, mmap=True)
        out.append({
            "sequences": [ds[i].tolist() for i in range(len(ds))],
            "dtype": str(ds.index.dtype.__name__),
            "document_indices": ds.document_indices.tolist(),
        })
    return {"datasets": out}


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    cmd = sys.argv[1]
    request = json.load(sys.stdin)
    reply = {
        "train_bpe": train_bpe,
        "shift_ids": shift_ids,
        "encode": encode,
        "write_parquet": write_parquet,
        "megatron_build": megatron_build,
        "megatron_read": megatron_read,
    }[cmd](request)
    sys.stdout.write(json.dumps(reply))
