"""Benchmarks of StrongChain Exchange, each case printed beside a baseline measured in the same run.

Run with ``python -m bench`` (see ``python -m bench --help`` and the README). This package is
not part of the product (it is not installed with it) and not part of the tests (pytest does not
collect it, CI does not run it): it needs the real services, several minutes, and a quiet machine.
"""
