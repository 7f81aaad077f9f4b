# The executor's error classes as `error` events (errors.py): a refusal is not fatal, a fatal error is an echo only
# when it says a peer went away, wherever in its text that is said (a DDP hook's error ends in traceback frames).
from __future__ import annotations

import unittest

from ..errors import FatalError, Refusal, error_event, peer_failure


class Errors(unittest.TestCase):
    def test_events_of_each_class(self) -> None:
        self.assertEqual(error_event(3, Refusal("step plan 1: bad step number")),
                         {"type": "error", "rank": 3, "message": "step plan 1: bad step number", "fatal": False,
                          "echo": False})
        self.assertEqual(error_event(0, FatalError("init: no GPU"))["fatal"], True)
        self.assertEqual(error_event(0, FatalError("init: no GPU"))["echo"], False)
        self.assertEqual(error_event(1, FatalError("save: a peer went away", echo=True))["echo"], True)
        self.assertEqual(error_event(1, KeyError("x")), {"type": "error", "rank": 1, "message": "'x'",
                                                          "fatal": False, "echo": False})

    def test_a_peer_failure_is_found_before_traceback_frames(self) -> None:
        hook = RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:19876.\n"
                            "Exception raised from run at ...:\n  /x/kernels/torch/zero.py(25): <lambda>")
        msg, echo = peer_failure(hook)
        self.assertTrue(echo)
        self.assertEqual(msg, "a peer rank disconnected or aborted ([gloo/transport/tcp/pair.cc:553] Connection "
                              "closed by peer [127.0.0.1]:19876.)")
        self.assertEqual(peer_failure(RuntimeError("injected fault in step 0")), ("injected fault in step 0", False))
        # A frame naming a file is not a peer's failure.
        self.assertEqual(peer_failure(RuntimeError('oops\n  File "/x/socket_util.py", line 3'))[1], False)


if __name__ == "__main__":
    unittest.main()
