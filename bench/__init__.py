"""Load and memory benchmarks of fastgw against nginx (see bench/README.md).

Run from the repository root: ``python -m bench.load`` and ``python -m bench.idle_memory``.
Nothing here is imported by fastgw itself; matplotlib (extra ``fastgw[bench]``) is optional.
"""
