"""The study: find the best symmetry group and hyperparameters for a lens classifier.

Rooms, each importing only the ones listed before it:

- :mod:`study.config` - the typed study configuration (YAML + ``--set`` overrides);
- :mod:`study.engine` - one run: spec, training loop, memory plan, checkpoints, predict loop, metrics;
- :mod:`study.tracking` - MLflow: the store, the Tune callback that logs trials, the leaderboard;
- :mod:`study.search` - Ray Tune + Optuna + ASHA: space, searcher, scheduler, trainable, study paths, data preparation, preflight, driver;
- :mod:`study.final` - the best trial retrained as a standalone job, evaluation, export (no Ray Tune);
- :mod:`study.verdict` - each group's best configuration retrained over seeds against the control;
- :mod:`study.cli` - the ``tune``, ``best``, ``evaluate`` and ``verdict`` commands (``run_study.py
  --help`` lists them with the data and model commands: ``simulate``, ``ingest``, ``inspect``,
  ``models``).
"""
