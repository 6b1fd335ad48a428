"""``torch.compile`` for a model's forward, with a fallback to eager PyTorch.

Compiling is opt-in (``train.compile: true``; measured by ``benchmarks/models.py --compile``, figures
in docs/models-and-memory.md): on a 2-core CPU the first step of a model compiles for 5-110 s,
after which the steerable models train 1.1-1.4x faster, which pays off only in long trials. When
compiling fails (a backend missing, an operation Dynamo cannot trace) the model runs eagerly, and
one warning says why.
"""
from __future__ import annotations

import warnings

import torch


def _compile_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean "compiling failed", not "the model failed"."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import InductorError

    return TorchDynamoException, InductorError


class CompiledForward:
    """Calls ``torch.compile(model)``; after a compile error, ``model`` itself (warned once).

    ``model`` stays the module that owns the parameters (its ``state_dict`` keys are unchanged);
    this is only a way of calling it.
    """

    def __init__(self, model: torch.nn.Module, label: str = "model", **compile_options):
        self.model, self.label = model, label
        self.compiled = torch.compile(model, **compile_options)
        self.error: BaseException | None = None

    def __call__(self, *args, **kwargs):
        if self.error is None:
            try:
                return self.compiled(*args, **kwargs)
            except _compile_errors() as err:
                self.error = err
                warnings.warn(f"{self.label}: torch.compile failed ({_root_cause(err)}); running it without "
                              "compiling", RuntimeWarning, stacklevel=2)
        return self.model(*args, **kwargs)


def _root_cause(err: BaseException) -> str:
    """``Type: first line`` of the innermost exception (Dynamo wraps the compiler's own error)."""
    while (inner := getattr(err, "inner_exception", None) or err.__cause__) is not None:
        err = inner
    first = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first[:200]}"
