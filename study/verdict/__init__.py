"""The verdict: retrain each group's best configuration over several seeds at one budget and
compare it with the trivial-group control (:mod:`.run`), with paired statistics (:mod:`.stats`),
tables and plots (:mod:`.report`), and its command line (:mod:`.cli`).

Builds on :mod:`study.final` (finding the study, scoring) and starts Ray through
:mod:`study.search.ray_start` to train the seeds in parallel.
"""
