"""A test model that does what its "cmd" input says, row by row:

    ok      answer: "pid" is the worker's PID, "rows" the rows predict got
    fail    raise ValueError (a model failure: 500)
    reject  raise ValueError with http_status 422 (the input's fault: 400)
    crash   write a line on stderr and end the process with status 3
    wait    open $ENTERED for writing, then read $RELEASE, then answer
    badout  return an output that is not a tensor
"""

import os
import sys


class Model:
    def metadata(self):
        return {
            "inputs": [{"name": "cmd", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "pid", "datatype": "INT64", "shape": [-1]},
                        {"name": "rows", "datatype": "INT64", "shape": [-1]}],
        }

    def predict(self, inputs):
        cmds = list(inputs["cmd"])
        for cmd in cmds:
            if cmd == "fail":
                raise ValueError("the model cannot handle fail")
            if cmd == "reject":
                e = ValueError("reject is not for this model")
                e.http_status = 422
                raise e
            if cmd == "crash":
                sys.stderr.write("crashing on purpose\n")
                sys.stderr.flush()
                os._exit(3)
            if cmd == "wait":
                with open(os.environ["ENTERED"], "w") as f:
                    f.write("in\n")
                with open(os.environ["RELEASE"]) as f:
                    f.read()
            if cmd == "badout":
                return {"pid": object()}
        n = len(cmds)
        return {"pid": [os.getpid()] * n, "rows": [n] * n}
