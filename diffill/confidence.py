"""Confidence: the estimated probability that a fill is exactly what the user would have written.

The engine keeps, for every fill and runner-up, the evidence its decoding produced (``Signals``):
the beam's log-probability of the fill and its margin over the next candidate, each token's
log-probability, how much of it the token caches gave (a copy) and from how long a match, whether
a line bridge placed the whole line and how many of its places agreed, the forward passes, and what
the syntax guard did. A logistic regression over a few features of them (``features``), fitted per
model on holes of the training split (``diffill calibrate``), turns them into a probability. Its
parameters live beside the model (``confidence.json``), with the model and adapter they were
fitted for; for any other model or adapter they are not used, and the confidence is the raw score
(``raw_score``: the fill's own probability under the decoder), flagged uncalibrated.

One-line holes (``line``) and longer ones (``block``) are fitted apart: their decoders differ.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CALIBRATION_FILE = "confidence.json"
# the language server's default minConfidence: chosen on the precision/coverage curve of one-line
# holes in a repository outside the corpus (docs/confidence.md)
MIN_CONFIDENCE = 0.4
CALIBRATION_FORMAT = 1  # the calibration file's layout: a file of another is refused (refit it)
KINDS = ("line", "block")
SYNTAX = ("runner-up", "repaired", "truncated")  # the guard's verdicts with a feature of their own
FEATURES = ("bias", "scored", "score", "mean_logp", "min_logp", "has_margin", "margin", "runner_up", "bridged",
            "bridge_share", "bridge_places", "copied_mean", "copied_min", "unscored_tokens", "passes", "tokens",
            "typed", *(f"syntax_{v}" for v in SYNTAX))


@dataclass
class Signals:
    """What the decoding knew about one fill (a result's or a runner-up's)."""

    kind: str  # line | block
    score: float | None = None  # the fill's log-probability (beam search); None: not scored
    margin: float | None = None  # its score less the next candidate's (the best runner-up's, for the fill)
    rank: int = 0  # 0: the fill; n: the n-th runner-up
    token_logps: list[float] = field(default_factory=list)  # each scored token's (and the end's)
    copied: list[float] = field(default_factory=list)  # each token's share of probability from the caches
    bridge: tuple[int, int] | None = None  # a line bridge: places agreeing, places counted
    tokens: int = 0
    forward_passes: int = 0
    syntax: str = "unconstrained"  # the syntax guard's verdict
    typed: int = 0  # characters of the word typed at the cursor (the fill continues it)


def raw_score(s: Signals) -> float:
    """The uncalibrated confidence: the fill's probability under the decoder (exp of its score, or
    of the sum of its tokens' log-probabilities), for a bridged line the share of its places that
    agree; 0 for an empty fill."""
    if not s.tokens:
        return 0.0
    if s.bridge is not None:
        return s.bridge[0] / max(1, s.bridge[1])
    total = s.score if s.score is not None else sum(s.token_logps)
    return min(1.0, math.exp(min(0.0, total)))


def features(s: Signals) -> list[float]:
    """``FEATURES`` of one fill (bounded, so that no single value runs away)."""
    lps = [max(-20.0, x) for x in s.token_logps] or [0.0]
    copied = s.copied or [0.0]
    agree, places = s.bridge or (0, 0)
    return [
        1.0,
        float(s.score is not None),
        max(-40.0, s.score) if s.score is not None else 0.0,
        sum(lps) / len(lps),
        min(lps),
        float(s.margin is not None),
        max(-20.0, min(20.0, s.margin)) if s.margin is not None else 0.0,
        float(s.rank > 0),
        float(s.bridge is not None),
        agree / places if places else 0.0,
        math.log1p(places),
        sum(copied) / len(copied),
        min(copied),
        math.log1p(max(0, s.tokens - len(s.copied))),
        math.log1p(s.forward_passes),
        math.log1p(s.tokens),
        float(s.typed > 0),
        *(float(s.syntax == v) for v in SYNTAX),
    ]


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass
class Model:
    """One kind's logistic regression: p = sigmoid(w . (x - mean) / scale)."""

    weights: list[float]
    mean: list[float]
    scale: list[float]
    cases: int = 0  # rows it was fitted on
    positives: int = 0  # ... of them exactly right

    def predict(self, x: list[float]) -> float:
        z = sum(w * (v - m) / c for w, v, m, c in zip(self.weights, x, self.mean, self.scale))
        return _sigmoid(z)


@dataclass
class Calibration:
    """Per-kind models and what they were fitted for (``fingerprint``)."""

    fingerprint: dict
    models: dict[str, Model]
    fitted_on: dict = field(default_factory=dict)  # a record for people: the holes, the command

    def confidence(self, s: Signals) -> float | None:
        """The calibrated probability; None for a kind this calibration has no model of."""
        if not s.tokens:
            return 0.0
        model = self.models.get(s.kind)
        return model.predict(features(s)) if model is not None else None

    def save(self, path: str | Path) -> None:
        data = {"version": CALIBRATION_FORMAT, "features": list(FEATURES), "fingerprint": self.fingerprint,
                "fitted_on": self.fitted_on, "models": {k: asdict(m) for k, m in self.models.items()}}
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """A calibration file; ValueError when it is damaged or of another version or feature set."""
        try:
            data = json.loads(Path(path).read_text())
            if data.get("version") != CALIBRATION_FORMAT or data.get("features") != list(FEATURES):
                raise ValueError("written for another version of the confidence features; refit it with "
                                 "`diffill calibrate`")
            models = {k: Model(**m) for k, m in data["models"].items() if k in KINDS}
            if any(len(m.weights) != len(FEATURES) or len(m.mean) != len(FEATURES) or len(m.scale) != len(FEATURES)
                   for m in models.values()):
                raise ValueError("its models do not have one weight per feature")
            return cls(dict(data["fingerprint"]), models, dict(data.get("fitted_on", {})))
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"not a calibration file ({e})") from e


def fingerprint(base_sha256: str, adapter: str | None) -> dict:
    """What a calibration is valid for: the bare base's weights and the adapter merged into them
    (its folder's name and weights' sha256), or none."""
    out = {"base_sha256": base_sha256, "adapter": None}
    if adapter:
        folder = Path(adapter)
        weights = folder / "adapter_model.safetensors"
        digest = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else ""
        out["adapter"] = {"name": folder.name, "sha256": digest}
    return out


def load_calibration(folder: str | Path, wanted: Callable[[], dict]) -> Calibration | None:
    """The calibration in ``folder`` when there is one for ``wanted()`` (``fingerprint``, asked for
    only when there is a file: the base's fingerprint reads every weight); a damaged one, or one
    fitted for another model or adapter, is ignored with a warning."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        calibration = Calibration.load(path)
    except ValueError as e:
        log.warning("confidence not calibrated: %s: %s", path, e)
        return None
    if calibration.fingerprint != wanted():
        log.warning("confidence not calibrated: %s was fitted for another model or adapter (%s); "
                    "refit it with `diffill calibrate`", path, _describe(calibration.fingerprint))
        return None
    return calibration


def _describe(fp: dict) -> str:
    adapter = fp.get("adapter") or {}
    return f"base {str(fp.get('base_sha256'))[:12]}, adapter {adapter.get('name', 'none')}"


def fit(rows: list[tuple[Signals, bool]], l2: float = 1.0, steps: int = 200) -> dict[str, Model]:
    """Per kind, a logistic regression of exactness on ``features`` (L2-penalised, by L-BFGS on
    standardised features); kinds with no row, or with rows all right or all wrong, get no model."""
    import torch

    out: dict[str, Model] = {}
    for kind in KINDS:
        mine = [(features(s), y) for s, y in rows if s.kind == kind and s.tokens]
        positives = sum(y for _, y in mine)
        if not mine or positives in (0, len(mine)):
            continue
        x = torch.tensor([f for f, _ in mine], dtype=torch.float64)
        y = torch.tensor([float(v) for _, v in mine], dtype=torch.float64)
        mean, scale = x.mean(0), x.std(0)
        mean[0], scale[0] = 0.0, 1.0  # the bias stays 1
        scale = torch.where(scale > 1e-9, scale, torch.ones_like(scale))
        z = (x - mean) / scale
        w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w, y, reduction="sum")
            loss = loss + 0.5 * l2 * (w[1:] ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        out[kind] = Model([float(v) for v in w.detach()], [float(v) for v in mean], [float(v) for v in scale],
                          len(mine), int(positives))
    return out


# -- measuring: precision against coverage, calibration error ------------------------------------


def curve(points: list[tuple[float, bool]], thresholds: list[float] | None = None) -> list[dict]:
    """For each threshold: the share of fills shown (confidence at or above it: ``coverage``) and
    the share of those exactly right (``precision``; None when none is shown)."""
    thresholds = thresholds if thresholds is not None else [round(0.05 * i, 2) for i in range(20)]
    n = max(1, len(points))
    out = []
    for t in thresholds:
        shown = [y for c, y in points if c >= t]
        out.append({"threshold": t, "coverage": round(len(shown) / n, 4), "shown": len(shown),
                    "precision": round(sum(shown) / len(shown), 4) if shown else None})
    return out


def expected_calibration_error(points: list[tuple[float, bool]], bins: int = 10) -> float:
    """Over ``bins`` equal-width bins of confidence: the gap between the mean confidence and the
    share exactly right, weighted by the bin's share of the fills."""
    if not points:
        return 0.0
    total = 0.0
    for b in range(bins):
        inside = [(c, y) for c, y in points if min(bins - 1, int(c * bins)) == b]
        if inside:
            total += len(inside) * abs(sum(c for c, _ in inside) / len(inside) - sum(y for _, y in inside) / len(inside))
    return total / len(points)
