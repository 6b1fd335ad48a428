"""``train.compile`` (lensnets/compiled.py): the compiled model computes what the eager one does,
with the same gradients, and a compiler that fails leaves the model running eagerly, warned once.

The equality test compiles with Dynamo and AOTAutograd (``backend="aot_eager"``: the model is
traced, the hand-written backward passes of ``lensnets.band_autograd`` included) but without
Inductor's C++ code generation, which takes about a minute per model on this CPU; that path is
measured by ``python benchmarks/models.py --compile``.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from lensnets import ModelConfig, build_model
from lensnets.compiled import CompiledForward

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
SIZE = 33


def _model(group: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name=group, width=0.125, input_size=SIZE)).train()


@pytest.mark.parametrize("group", ["C4", "SO2"])
def test_the_compiled_model_gives_the_eager_outputs_and_gradients(group):
    model = _model(group)
    x = torch.randn(4, 1, SIZE, SIZE)
    results = []
    for forward in (model, CompiledForward(model, group, backend="aot_eager")):
        out = forward(x)
        results.append([out, *torch.autograd.grad(out.square().sum(), list(model.parameters()))])
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)


def _failing_backend(graph_module, example_inputs):
    raise RuntimeError("no C++ compiler on this machine")


def test_a_compiler_that_fails_leaves_the_model_eager_with_one_warning():
    model = _model("C4").eval()
    x = torch.randn(2, 1, SIZE, SIZE)
    compiled = CompiledForward(model, "C4 w0.12", backend=_failing_backend)
    with pytest.warns(RuntimeWarning, match=r"C4 w0\.12: torch\.compile failed .*no C\+\+ compiler.*"
                                            r"running it without compiling"):
        out = compiled(x)
    torch.testing.assert_close(out, model(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiled(x)                       # eager from now on, without a second warning
    assert compiled.error is not None and compiled.model is model
