"""MLflow tracking: the store and its runs (:mod:`.mlflow_store`), the Tune callback that logs each
trial through an outbox (:mod:`.trial_logger`, the only module here that imports Ray Tune),
the leaderboard read back from the runs (:mod:`.leaderboard`: matched-rung tables and the one
rule for the study's best trial), and the study's saved view of the MLflow runs table and the
URL that opens it (:mod:`.runs_view`).

Imports :mod:`study.engine` at most; the search, the final job and the verdict build on it.
"""
