"""The search strategies ``benchmarks/study_efficiency.py`` replays, each a real Ray Tune searcher
and scheduler built as the study builds its own (``study.search.tuner.searcher_for`` and
``asha_settings``), plus two stronger methods from the literature:

- ``FIFO+random``: every trial trains all epochs; Optuna's random sampler (the baseline);
- ``ASHA+random``, ``ASHA+TPE``: the study with ``search.allocation: adaptive`` (TPE: the study's);
- ``ASHA+random/equal``, ``ASHA+TPE/equal``: ``search.allocation: equal`` (round-robin over groups,
  multivariate TPE within, every group its own rungs);
- ``ASHA+TPE/late``: the first rung two rungs later (grace period x reduction factor^2), for
  landscapes whose early epochs rank configurations badly;
- ``PASHA+TPE``: progressive ASHA (Bohdal et al. 2022, "PASHA: efficient HPO and NAS with
  progressive resource allocation", ICLR 2023): the maximum budget starts at the second rung and
  rises one rung at a time, only while the ranking at the top rung disagrees with the one below;
- ``BOHB``: ``TuneBOHB`` + ``HyperBandForBOHB`` (Falkner et al. 2018), Ray Tune's own BOHB
  (needs ``pip install hpbandster ConfigSpace``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from study.search import tune_internals as internals
from study.search.scheduler import GroupASHA


@dataclass(frozen=True)
class Strategy:
    scheduler: str              # FIFO | ASHA | PASHA | BOHB
    sampler: str = "TPE"        # TPE (the study's) | random
    allocation: str = "adaptive"
    late_first_rung: bool = False


STRATEGIES = {
    "FIFO+random": Strategy("FIFO", "random"),
    "ASHA+random": Strategy("ASHA", "random"),
    "ASHA+TPE": Strategy("ASHA"),
    "ASHA+random/equal": Strategy("ASHA", "random", "equal"),
    "ASHA+TPE/equal": Strategy("ASHA", allocation="equal"),
    "ASHA+TPE/late": Strategy("ASHA", late_first_rung=True),
    "PASHA+TPE": Strategy("PASHA"),
    "BOHB": Strategy("BOHB"),
}


class ProgressiveASHA(GroupASHA):
    """PASHA: ASHA whose maximum budget starts at its second rung. A trial reaching the current
    maximum stops there, unless the ranking of the trials recorded at that rung disagrees with
    their ranking one rung below (a pair ordered the other way, both gaps above ``tie``): then the
    maximum rises to the next rung and the trial goes on."""

    def __init__(self, *args, tie: float = 0.005, **kwargs):
        super().__init__(*args, **kwargs)
        self.milestones = sorted(m for m, _ in internals.bracket_rungs(internals.asha_brackets(self)[0]))
        self.top = min(1, len(self.milestones) - 1)     # index of the current maximum rung
        self.tie = tie

    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        epoch = result[internals.asha_time_attr(self)]
        if decision == TrialScheduler.STOP or self.top >= len(self.milestones) \
                or epoch < self.milestones[self.top]:
            return decision
        if self._ranks_disagree(internals.asha_trial_brackets(self)[trial.trial_id]):
            self.top += 1                                 # beyond the last rung: max_t
            return decision
        return TrialScheduler.STOP

    def _ranks_disagree(self, bracket) -> bool:
        rungs = dict(internals.bracket_rungs(bracket))
        if self.top == 0:
            return False
        upper, lower = rungs[self.milestones[self.top]], rungs[self.milestones[self.top - 1]]
        both = [t for t in upper if t in lower]
        for i, a in enumerate(both):
            for b in both[i + 1:]:
                du, dl = upper[a] - upper[b], lower[a] - lower[b]
                if du * dl < 0 and abs(du) > self.tie and abs(dl) > self.tie:
                    return True
        return False


def make_strategy(name: str, study, seed: int):
    """``(search_alg, scheduler)`` for strategy ``name`` on ``study`` (a StudyConfig), sampler seeded."""
    import optuna

    from study.search.tuner import asha_settings, searcher_for

    spec = STRATEGIES[name]
    if spec.scheduler == "BOHB":
        return make_bohb(study, seed)
    study = study.model_copy(update={"seed": seed, "search": study.search.model_copy(
        update={"allocation": spec.allocation})})
    sampler = optuna.samplers.RandomSampler(seed=seed) if spec.sampler == "random" else None
    search = searcher_for(study, sampler)
    asha = asha_settings(study)
    if spec.late_first_rung:
        asha["grace_period"] = min(asha["max_t"], asha["grace_period"] * asha["reduction_factor"] ** 2)
    if spec.scheduler == "FIFO":
        return search, FIFOScheduler()
    return search, (ProgressiveASHA if spec.scheduler == "PASHA" else GroupASHA)(**asha)


def make_bohb(study, seed: int):
    """Ray Tune's BOHB over the study's space (the same ranges; width only matters to groups)."""
    from ray import tune
    from ray.tune.schedulers import HyperBandForBOHB
    from ray.tune.search.bohb import TuneBOHB

    s, t = study.search, study.tune
    space = {"model": tune.choice(list(s.groups)), "width": tune.choice(list(s.widths)),
             "lr": tune.loguniform(*s.lr), "weight_decay": tune.loguniform(*s.weight_decay),
             "batch_size": tune.choice(list(s.batch_sizes))}
    search = TuneBOHB(space=space, metric=t.metric, mode=t.mode, seed=seed)
    scheduler = HyperBandForBOHB(time_attr="epoch", metric=t.metric, mode=t.mode,
                                 max_t=study.train.max_epochs, reduction_factor=t.reduction_factor)
    return search, scheduler


def needs_checkpoints(name: str) -> bool:
    """HyperBand pauses trials at its rungs and resumes them later, from a checkpoint."""
    return STRATEGIES[name].scheduler == "BOHB"

