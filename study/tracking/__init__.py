"""MLflow tracking: the store and its runs (:mod:`.mlflow_store`), the Tune callback that logs each
trial through an outbox (:mod:`.trial_logger`, the only module here that imports Ray Tune), and
the leaderboard read back from the runs (:mod:`.leaderboard`: matched-rung tables and the one
rule for the study's best trial).

Imports :mod:`study.engine` at most; the search, the final job and the verdict build on it.
"""
