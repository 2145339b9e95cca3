"""Reproducible benchmarks of PRODUCT.md's performance targets; see README.md "Benchmarks"."""
