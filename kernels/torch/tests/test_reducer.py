# The bucketed gradient all-reduce (comm.GradReducer) on two real gloo processes: every bucket's all-reduce starts
# during the backward (overlap), in the same order on every rank, and the result is the sum of the ranks' gradients.
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import unittest

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reducer_worker.py")


class GradReducerOverlap(unittest.TestCase):
    def test_buckets_start_during_the_backward_and_sum_every_rank(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo"}
        procs = [subprocess.Popen([sys.executable, WORKER, str(r), "2", str(port)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env) for r in range(2)]
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=300)
            self.assertEqual(p.returncode, 0, err.decode()[-2000:])
            outs.append(json.loads(out.decode().strip().splitlines()[-1]))
        for o in outs:
            self.assertGreater(o["buckets"], 4, "several buckets")
            self.assertEqual(o["startedDuringBackward"], o["buckets"], "every bucket started by the backward hooks")
            self.assertLessEqual(o["maxErr"], 1e-6 * o["scale"])


if __name__ == "__main__":
    unittest.main()
