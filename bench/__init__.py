"""Benchmarks of faststate_mw, run with ``python -m bench [section ...]`` (``make bench``).

Each section is a function in its own module, registered in :data:`bench.__main__.SECTIONS`.
"""
