"""Benchmarks that print tables (results in BENCHMARKS.md), run as `python -m bench.<name>` from the project root.
The product never imports this package; the benchmarks import the product."""
