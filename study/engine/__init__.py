"""The training engine: what one run is (:mod:`.spec`), the loop that trains it (:mod:`.trainer`)
within the device's memory (:mod:`.memory_plan`), its checkpoints (:mod:`.checkpoint`), the one
predict loop (:mod:`.predict`) and the metrics every score is computed with (:mod:`.metrics`).

No Ray, Optuna or MLflow here: trials (:mod:`study.search`), the standalone rerun and the verdict
(:mod:`study.final`, :mod:`study.verdict`) all train and score through these modules.
"""
