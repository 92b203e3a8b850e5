"""Test double of the SOPHON SDK's `sophon` package: only `sophon.sail` (see sail.py).

Lives under tests/fakes so it is importable only where a test puts tests/fakes on sys.path
(tests/sail/conftest.py, or PYTHONPATH for subprocesses); never on a real machine.
"""
