"""The decoder a ``SamplerConfig`` names: left-to-right beam search (``beam`` > 1, ``model.beam``)
or threshold decoding (``model.sampler``; on a canvas that grows and shrinks,
``model.variable_length``, where the backend has expand and delete tokens)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from diffill.model.backend import Backend
from diffill.model.beam import beam_search
from diffill.model.decoding import Bans, Constraint, Request, SampleResult, SamplerConfig, StepTrace
from diffill.model.sampler import Sampler
from diffill.model.variable_length import VariableLengthSampler


@dataclass
class Decoder:
    backend: Backend
    config: SamplerConfig = field(default_factory=SamplerConfig)

    @torch.inference_mode()
    def sample(self, requests: list[Request], length: int, constraint: Constraint | None = None,
               bans: Bans | None = None, cancelled: Callable[[], bool] = lambda: False,
               on_step: Callable[[StepTrace], None] | None = None) -> list[SampleResult]:
        """Fill one canvas of ``length`` slots per request, as ``Sampler.sample`` describes."""
        if (self.config.beam or 0) > 1:
            if not requests:
                return []
            if length < 1:
                raise ValueError("the canvas needs at least one slot")
            return beam_search(self.backend, self.config, requests, length, constraint, bans, cancelled, on_step)
        if getattr(self.backend, "expand_id", None) is not None:  # DreamOn
            return VariableLengthSampler(self.backend, self.config).sample(requests, length, constraint, bans,
                                                                           cancelled, on_step)
        return Sampler(self.backend, self.config).sample(requests, length, constraint, bans, cancelled, on_step)
