"""Benchmarks: run as `python -m benchmarks.<name>`; `--json` makes the last line a JSON object."""
