"""The search benchmark suite (issue 18): does greentune's search generalise?

``problems`` (the Zeus traces and the interface), ``constructed`` (the seeded generator),
``peers`` (every strategy behind one ask/tell seam), ``runner`` (one run, one at a time or
k at once on simulated time), ``summary`` (the tables). ``python -m benchmarks.suite --help``.
"""
