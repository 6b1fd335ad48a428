"""No trial dies of memory: lean/plain equivalence in the engine, micro-batches, OOM retries."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from tests.support.tiny_studies import ROOT, as_sets, tiny_overrides
from lensnets import ModelConfig, build_model
from lensnets.memory import GIB, equal_micro_batch, measure_train_step
from study.engine.spec import RunSpec, Split
from study.engine.trainer import Trainer, fit
from study.engine.memory_plan import TrialDoesNotFit, plan_memory
from study.tracking.mlflow_store import child_runs

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
CLASSES = ["no_sub", "cdm", "axion"]


@pytest.fixture(scope="module")
def splits(tiny_dataset):
    from data_io import open_dataset

    dataset = open_dataset(tiny_dataset)
    return Split(*dataset.arrays("train")), Split(*dataset.arrays("val"))


def spec(**kwargs) -> RunSpec:
    base = dict(model="C4", width=0.1, lr=1e-3, weight_decay=1e-4, batch_size=16, max_epochs=2,
                image_size=29, width_mode="channels", seed=3)
    return RunSpec(**{**base, **kwargs})


def test_lean_and_plain_training_give_the_same_epoch_metrics(splits):
    """Gradients agree to ~1e-6 (tests/lensnets/test_lensnets_memory.py); Adam can amplify that noise
    on this 57-image set (at lr 1e-3 val_loss moved by 3e-4 at epoch 2), so lr is 3e-4 here."""
    train, val = splits
    histories = {mode: fit(Trainer(spec(memory=mode, lr=3e-4, max_epochs=3), CLASSES), train, val,
                           until_epoch=3) for mode in ("plain", "lean")}
    for plain, lean in zip(histories["plain"], histories["lean"]):
        for key in ("train_loss", "val_loss", "val_auc_micro", "val_acc"):
            assert abs(plain[key] - lean[key]) <= 1e-4, (key, plain[key], lean[key])


def _gradients(trainer: Trainer, x, y, micro: int) -> list[torch.Tensor]:
    trainer.micro_batch = micro
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.accumulate_gradients(x, y)
    return [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]


def test_micro_batch_accumulation_equals_the_full_batch_gradient():
    trainer = Trainer(spec(), CLASSES)
    trainer.model.train()
    for module in trainer.model.modules():   # fixed batch-norm statistics: the only thing
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):   # micro-batches change
            module.eval()
    x, y = torch.randn(10, 1, 29, 29), torch.randint(0, 3, (10,))
    full = _gradients(trainer, x, y, micro=10)
    for micro in (3, 4, 1):
        for a, b in zip(full, _gradients(trainer, x, y, micro)):
            assert (a - b).abs().max() <= 1e-5 * a.abs().max(), micro


def test_a_tiny_budget_trains_in_micro_batches_with_the_configured_batch(splits):
    train, val = splits
    model = build_model(ModelConfig(name="C4", width=0.1, width_mode="channels", input_size=29))
    budget = measure_train_step(model, 5).peak / GIB
    trainer = Trainer(spec(memory_budget_gb=budget, max_epochs=1), CLASSES)
    assert trainer.micro_batch == equal_micro_batch(16, 5) == 4
    micro_batches, images_per_step = [], []
    trainer.oom_hook = micro_batches.append
    step = trainer.optimizer.step

    def counting_step(*args, **kwargs):
        images_per_step.append(sum(micro_batches) - sum(images_per_step))
        return step(*args, **kwargs)

    trainer.optimizer.step = counting_step
    record = fit(trainer, train, val, until_epoch=1)[-1]
    assert record["micro_batch"] == 4 and record["memory_estimate_gib"] <= budget
    assert max(micro_batches) <= 4 and sum(micro_batches) == len(train)
    batches = math.ceil(len(train) / 16)                 # one optimiser step per configured batch,
    assert len(images_per_step) == batches               # which np.array_split sizes alike
    assert set(images_per_step) <= {len(train) // batches, len(train) // batches + 1}


def test_a_trial_that_fits_at_no_size_fails_with_one_line():
    model = build_model(ModelConfig(name="C4", width=0.1, width_mode="channels", input_size=29))
    with pytest.raises(TrialDoesNotFit) as err:
        plan_memory(model, "C4 w0.10", 16, memory="lean", amp=True, channels_last=None,
                    device=torch.device("cpu"), budget_gb=1e-4)
    message = str(err.value)
    assert "\n" not in message and "C4 w0.10 needs" in message and "budget" in message


def _oom_above(limit: int):
    def hook(micro: int) -> None:
        if micro > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated by the test)")
    return hook


def test_an_out_of_memory_error_halves_the_micro_batch_and_retries_the_epoch(splits, capsys):
    train, val = splits
    retried = Trainer(spec(max_epochs=1), CLASSES)
    retried.oom_hook = _oom_above(8)
    record = fit(retried, train, val, until_epoch=1)[-1]
    assert record["micro_batch"] == 8 and retried.epoch == 1
    assert "out of GPU memory at micro-batch 16; retrying epoch 1 at 8" in capsys.readouterr().out
    clean = Trainer(spec(max_epochs=1), CLASSES)   # the retry started from the epoch's start
    clean.micro_batch = 8
    fit(clean, train, val, until_epoch=1)
    for a, b in zip(retried.model.parameters(), clean.model.parameters()):
        assert torch.equal(a, b)


def test_a_second_out_of_memory_error_ends_the_trial_with_a_reason(splits):
    train, val = splits
    trainer = Trainer(spec(max_epochs=1), CLASSES)
    trainer.oom_hook = _oom_above(2)
    with pytest.raises(TrialDoesNotFit, match="at micro-batch 16 and again at 8"):
        trainer.train_epoch(train)


@pytest.mark.slow
def test_every_cluster_trial_fits_a_24_gb_gpu_by_the_estimate():
    """configs/cluster-gpu.yaml: every (model, width) at its largest batch, lean mode, float32
    (CUDA's bfloat16 needs about half), within 22 GiB of an A10G's 24 GB."""
    config = yaml.safe_load((ROOT / "configs" / "cluster-gpu.yaml").read_text())
    search, size = config["search"], config["data"]["image_size"]
    batch = max(search["batch_sizes"])
    for group in search["groups"]:
        for width in (search["widths"] if group != "resnet18" else [1.0]):
            model = build_model(ModelConfig(name=group, width=width, input_size=size,
                                            width_mode=config["train"]["width_mode"]))
            plan = plan_memory(model, f"{group} w{width}", batch, memory="lean", amp=True,
                               channels_last=False, device=torch.device("cpu"), budget_gb=22.0)
            assert 1 <= plan.micro_batch <= batch and plan.peak_bytes <= 22.0 * GIB, (group, width)


@pytest.mark.slow
def test_studies_on_a_tiny_budget_micro_batch_or_fail_with_a_reason(tiny_dataset, tmp_path, shared_ray, run_main):
    model = build_model(ModelConfig(name="D4", width=0.1, width_mode="channels", input_size=29))
    budget = measure_train_step(model, 6).peak / GIB
    overrides = tiny_overrides(tiny_dataset, tmp_path, trials=2, epochs=1, name="small") + [
        f"train.memory_budget_gb={budget:.6f}", "tune.max_failures=0"]
    code, _, err = run_main("tune", *as_sets(overrides))
    assert code == 0, err[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("small")
    parent, = client.search_runs([exp.experiment_id], "tags.role = 'study'")
    runs = child_runs(client, exp.experiment_id, parent.info.run_id)
    assert len(runs) == 2 and {r.data.tags["status"] for r in runs} <= {"completed", "pruned"}
    for run in runs:
        assert 1 <= run.data.metrics["micro_batch"] < 16 and run.data.params["batch_size"] == "16"

    overrides = tiny_overrides(tiny_dataset, tmp_path, trials=1, epochs=1, name="none") + [
        "train.memory_budget_gb=0.0001", "tune.max_failures=0"]
    code, _, err = run_main("tune", *as_sets(overrides))
    assert code == 1 and "every trial failed" in err
    exp = client.get_experiment_by_name("none")
    run, = client.search_runs([exp.experiment_id], "tags.role = 'trial'")
    assert run.data.tags["status"] == "failed"
    assert run.data.tags["failure_reason"].startswith("TrialDoesNotFit: ")
    assert "budget" in run.data.tags["failure_reason"]


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_cuda_trainer_runs_lean_bf16_within_its_estimate(splits):
    """On CUDA the plan picks lean memory and bf16 autocast; the real peak stays near the estimate."""
    train, val = splits
    trainer = Trainer(spec(max_epochs=1, memory_budget_gb=4.0), CLASSES, device="cuda")
    assert trainer.plan.memory_mode == "lean" and trainer.plan.autocast == torch.bfloat16
    assert trainer.plan.channels_last
    torch.cuda.reset_peak_memory_stats()
    record = fit(trainer, train, val, until_epoch=1)[-1]
    assert 0.0 <= record["val_auc_micro"] <= 1.0 and record["micro_batch"] == 16
    real = torch.cuda.max_memory_allocated()
    print(f"FIGURES cuda peak {real / 2**20:.1f} MiB, estimate {trainer.plan.peak_bytes / 2**20:.1f} MiB")
    assert real <= 2.0 * trainer.plan.peak_bytes + 64 * 2 ** 20


@needs_cuda
@pytest.mark.parametrize("mode", ["plain", "lean"])
def test_cuda_lean_and_plain_steps_agree(mode):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="C8", width=0.25, input_size=65)).cuda().train()
    from lensnets import set_memory_mode

    x, y = torch.randn(4, 1, 65, 65, device="cuda"), torch.randint(0, 3, (4,), device="cuda")
    grads = {}
    for m in ("plain", mode):
        clone = set_memory_mode(copy.deepcopy(model), m)
        torch.nn.functional.cross_entropy(clone(x), y).backward()
        grads[m] = [p.grad for p in clone.parameters()]
    for a, b in zip(grads["plain"], grads[mode]):
        assert (a - b).abs().max() <= 1e-4 * a.abs().max().clamp_min(1e-12)


def test_train_compile_runs_the_training_forward_through_torch_compile():
    """``train.compile: true`` reaches the trainer; its training forward is the compiled one
    (tests/lensnets/test_lensnets_compiled.py shows it computes the same), the model it saves is
    the module itself."""
    from lensnets.compiled import CompiledForward
    from study.config import load_config
    from study.search.space import run_spec

    config = load_config(None, ["train.compile=true"])
    sampled = {"model": "C4", "width": 0.1, "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 16}
    trainer = Trainer(spec(compile=run_spec(sampled, config).compile), CLASSES)
    assert isinstance(trainer.forward, CompiledForward) and trainer.forward.model is trainer.model
    assert not isinstance(Trainer(spec(), CLASSES).forward, CompiledForward)
