"""The domain check: a model's training-data domain against a dataset's.

Every model written by ``best`` records its training data's domain (raw image shape, pixel
scale, field of view, preset or source; :mod:`data_io.domain`) in
``model_weights.pt`` and in its MLflow metadata. :func:`study.final.evaluate.evaluate_dataset` compares it with the
dataset's and prints one ``warning:`` line per difference on stderr; with ``match_field`` it
resamples the images to the model's field of view and raw shape first. Models without a record
(weights files and checkpoints written before it) load as before; the check then prints one
``note:`` line saying what it could not compare. The outcome goes into ``metrics.json`` under
``domain``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import UsageError
from data_io.domain import (Domain, Mismatch, compare, format_field, format_shape,
                            resample_to_field, warning_line)
from study.engine.predict import Predictor


@dataclass
class DomainCheck:
    """A model's training-data domain against a dataset's (see :mod:`data_io.domain`)."""

    model: Domain | None
    data: Domain
    mismatches: list[Mismatch]
    not_compared: list[str]

    @classmethod
    def of(cls, predictor: Predictor, data: Domain) -> "DomainCheck":
        if predictor.domain is None:
            return cls(None, data, [], ["raw image shape", "pixel scale", "field of view", "source"])
        return cls(predictor.domain, data, *compare(predictor.domain, data))

    @property
    def status(self) -> str:
        """``mismatch``; ``match``; ``partial`` (no difference found, something not compared);
        ``unknown`` (the model records no training-data domain)."""
        if self.mismatches:
            return "mismatch"
        if self.model is None:
            return "unknown"
        return "partial" if self.not_compared else "match"

    @property
    def geometric(self) -> list[Mismatch]:
        """The differences that resampling fixes: raw image shape, pixel scale, field of view."""
        return [m for m in self.mismatches if m.geometric]

    def require_field_match(self, model_name: str, data) -> None:
        """``UsageError`` unless both pixel scales (and the model's raw shape) are known."""
        if self.model is None or self.model.pixel_scale is None or self.model.raw_image_shape is None:
            raise UsageError(f"--match-field: model {model_name} records no pixel scale for its "
                             "training data (written before domain records); rerun `run_study.py best` "
                             "to write a model that has one, or drop --match-field")
        if self.data.pixel_scale is None:
            raise UsageError(f"--match-field: dataset {data} records no pixel scale; re-ingest it with "
                             f"`run_study.py ingest SRC --out {data} --overwrite --pixel-scale ARCSEC` "
                             "(arcsec per pixel), or drop --match-field")

    def match_field(self, images: np.ndarray) -> np.ndarray:
        """``images`` resampled to the model's field of view and raw shape."""
        return resample_to_field(images, self.data.pixel_scale, self.model.raw_image_shape,
                                 self.model.pixel_scale)

    def messages(self, model_name: str, data, match_field: bool = False) -> list[str]:
        """One ``warning:`` line per difference (naming both values and a fix), ``note:`` lines
        for what was resampled and for what could not be compared."""
        lines = []
        if match_field and self.geometric:
            lines.append(f"note: --match-field: resampled the images from {self.data.describe()} "
                         f"to the model's {self.model.describe()}")
        elif match_field:
            lines.append("note: --match-field: the images already have the model's raw shape and "
                         "field of view; nothing resampled")
        for m in self.mismatches:
            if not (match_field and m.geometric):
                lines.append(warning_line(m, f"data {data}", f"model {model_name} was trained on",
                                          self._fix(m)))
        if self.not_compared:
            lines.append(self._unknown_note(model_name, data))
        return lines

    def _fix(self, mismatch: Mismatch) -> str:
        model = self.model
        simulate = f"simulate the data with --preset {model.preset}" if model.preset else ""
        if mismatch.what == "preset":
            return f"{simulate} to score the model in its own domain (another preset measures transfer)"
        if mismatch.what == "source":
            return ("the score measures transfer from the model's training data; train on this source "
                    "for an in-domain score")
        if model.pixel_scale is not None and self.data.pixel_scale is not None:
            fix = (f"pass --match-field to resample the images to the model's "
                   f"{format_field(model.field_of_view)} field at {format_shape(model.raw_image_shape)} px")
        elif self.data.pixel_scale is None:
            fix = "re-ingest the data with --pixel-scale ARCSEC, then --match-field can resample it"
        else:
            fix = f"score the model on {format_shape(model.raw_image_shape)} images (it records no pixel scale to resample to)"
        return f"{fix}, or {simulate}" if simulate else fix

    def _unknown_note(self, model_name: str, data) -> str:
        if self.model is None:
            return (f"note: model {model_name} records no training-data domain (a weights file or "
                    "checkpoint written before domain records): raw image shape, pixel scale and field "
                    "of view are not checked; rerun `run_study.py best` for a model that records them")
        sides = [f"{side} records no {' or '.join(missing)}"
                 for side, domain in (("the model", self.model), ("the data", self.data))
                 if (missing := _unrecorded(domain))]
        hint = "; re-ingest the data with --pixel-scale ARCSEC" if self.data.pixel_scale is None else ""
        return f"note: not compared: {', '.join(self.not_compared)} ({', '.join(sides)}){hint}"

    def record(self, match_field: bool, resampled: bool) -> dict:
        """What ``metrics.json`` keeps: both domains, the differences, what was done about them."""
        if resampled:
            done = {"applied": True, "from": self.data.to_dict(), "to": self.model.to_dict()}
        else:
            done = {"applied": False, "reason": "already the model's field and shape" if match_field
                    else "not requested (--match-field)"}
        return {"status": self.status, "model": self.model.to_dict() if self.model else None,
                "data": self.data.to_dict(), "mismatches": [m.to_dict() for m in self.mismatches],
                "not_compared": list(self.not_compared), "match_field": done}


def _unrecorded(domain: Domain) -> list[str]:
    return [what for what, value in (("raw image shape", domain.raw_image_shape),
                                     ("pixel scale", domain.pixel_scale), ("source", domain.source))
            if value is None]
