"""Sentinel benchmarks: the Dagster pipeline against the in-process limit and the seed style.

`python -m benchmarks.run` (or `make bench`) runs them and writes `benchmarks/results.json`,
`benchmarks/report.md` and the results block of `benchmarks/README.md`.
"""
