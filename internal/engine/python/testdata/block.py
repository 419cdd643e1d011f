"""A test model whose predict waits: it opens the FIFO named by $ENTERED for
writing (so the test knows a request is in flight), then reads the FIFO
named by $RELEASE until the test writes to it."""

import os


class Model:
    thread_safe = True

    def predict(self, inputs):
        with open(os.environ["ENTERED"], "w") as f:
            f.write("in\n")
        with open(os.environ["RELEASE"]) as f:
            f.read()
        return {"done": [True]}
