"""Benchmarks: each ``bench/*.py`` module with a ``main()`` returning a JSON-able dict; ``python -m bench`` runs all."""
