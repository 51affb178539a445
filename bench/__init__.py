"""memctl's benchmark harness (``make bench``, ``python -m bench``).

Every benchmark measures memctl and a reference doing the same work in the
same run, alternating between them so that a noisy machine slows both alike,
and reports medians and their ratio against a target. Absolute figures alone
mean little on a shared machine; the ratios are what the targets constrain.

Layout: ``registry`` holds the types (``Benchmark``, ``Row``, ``Target``),
``suite`` lists the benchmarks in run order, one module per benchmark family
does the measuring, ``report`` prints the table.
"""
