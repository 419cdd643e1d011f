# Put on PYTHONPATH, this hides the real numpy, so tests can run the worker's
# pure-Python path on a machine that has numpy.
raise ImportError("numpy is hidden for this test")
