"""The final job, without Ray Tune: find a study's best trial in MLflow and retrain it
(:mod:`.best`, :mod:`.best_job`, :mod:`.best_cli`), score models on datasets (:mod:`.evaluate`,
after :mod:`.domain_check`), rotation robustness (:mod:`.robustness`), plots
(:mod:`.report_plots`), weights files and MLflow models (:mod:`.weights`), and the raw-image
classifier exported with ``torch.export`` (:mod:`.export`).

Builds on :mod:`study.engine` and :mod:`study.tracking`, and on :mod:`study.search.space` only to
turn a trial's sampled values into a run spec.
"""
