# One rank of test_reducer.py: a gloo process that runs a backward with the bucketed GradReducer armed and
# prints, as one JSON line, how many buckets it started during the backward and whether the reduced gradient
# equals the sum of every rank's own gradient. Usage: reducer_worker.py RANK WORLD PORT.
from __future__ import annotations

import datetime
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from comm import GradReducer  # noqa: E402
from gpt import Gpt  # noqa: E402
from model import ModelShape, init_params, param_layout  # noqa: E402
from packing import SyntheticSource, pack_group  # noqa: E402


def main() -> None:
    rank, world, port = (int(x) for x in sys.argv[1:4])
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, world, rank == 0, datetime.timedelta(seconds=30))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    shape = ModelShape.from_json({"layers": 2, "hidden": 64, "heads": 4, "vocab": 256, "maxSeq": 1024})
    lay = param_layout(shape)
    params = init_params(lay, 1)
    grads = torch.zeros_like(params)
    model = Gpt(lay, params, grads)
    red = GradReducer(grads, [(s.offset, s.offset + s.length) for s in lay.slices], model.params, bucket_bytes=100_000)
    pk = pack_group([SyntheticSource(256).read({"id": rank, "offset": 0, "length": 300})], 1, 1024, 256)

    def backward() -> None:
        model.forward(pk.tokens, pk.positions, pk.targets, pk.cu_seqlens, None, 1).sum().backward()

    backward()  # disarmed: this rank's own gradient
    own = grads.clone()
    grads.zero_()
    red.arm()
    backward()
    started = red.next
    red.finish()
    parts = [torch.zeros_like(own) for _ in range(world)]
    dist.all_gather(parts, own)
    expect = parts[0]
    for p in parts[1:]:
        expect = expect + p
    print(json.dumps({"buckets": len(red.buckets), "startedDuringBackward": started,
                      "maxErr": float((grads - expect).abs().max()), "scale": float(expect.abs().max())}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
