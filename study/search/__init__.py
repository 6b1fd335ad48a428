"""The search: Ray Tune runs trials proposed by Optuna and stopped early by ASHA.

:mod:`.space` (the search space and how a sampled point becomes a run spec), :mod:`.searcher`
(the resumable Optuna searcher), :mod:`.scheduler` (the resumable ASHA scheduler and the resume rules), :mod:`.trainable` (one trial: the engine's loop
reporting to Tune), :mod:`.study_paths` (where a study keeps its state), :mod:`.data_preparation` (the dataset, simulated
when absent), :mod:`.preflight` (checks on user input before anything is written),
:mod:`.ray_start` (a local instance or a cluster), :mod:`.tuner` (the study driver) and
:mod:`.tune_internals` (every private Ray / Optuna attribute the resume guarantees rely on, checked).

Builds on :mod:`study.engine` and :mod:`study.tracking`; nothing outside ``study.search``, the
verdict (which starts Ray) and the command line imports it.
"""
