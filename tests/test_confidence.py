"""Confidence of fills (diffill/confidence.py) and abstention below a minimum (the engine)."""

from __future__ import annotations

import logging
import math
import shutil

import pytest

from diffill.confidence import (CALIBRATION_FILE, FEATURES, Calibration, Model, Signals, curve,
                                expected_calibration_error, features, fit, raw_score)
from diffill.engine import Engine, EngineConfig, InfillRequest

SRC = '''def area(width, height):
    return width * height


def total(values):
    result = 0
    for v in values:
        result += v
    return result
'''


def holes() -> list[InfillRequest]:
    """One-line holes at a few cursors of SRC (the rest of each line removed)."""
    reqs = []
    for line in ("return width * height", "result = 0", "for v in values:"):
        at = SRC.index(line)
        reqs.append(InfillRequest(SRC[:at] + SRC[at + len(line):], at, at, language="python", multiline=False))
    return reqs


# -- the score and the fit -------------------------------------------------------------------


def test_the_raw_score_is_the_fills_probability_or_its_bridges_agreement():
    assert raw_score(Signals("line", score=math.log(0.25), tokens=3)) == pytest.approx(0.25)
    assert raw_score(Signals("line", token_logps=[math.log(0.5), math.log(0.5)], tokens=2)) == pytest.approx(0.25)
    assert raw_score(Signals("line", bridge=(3, 4), tokens=5)) == pytest.approx(0.75)
    assert raw_score(Signals("line", score=-1.0, tokens=0)) == 0.0  # an empty fill


def test_features_are_finite_and_one_per_name():
    for s in (Signals("line"), Signals("line", score=-1e9, margin=1e9, token_logps=[-math.inf], tokens=3),
              Signals("block", bridge=(0, 0), tokens=1, syntax="repaired")):
        x = features(s)
        assert len(x) == len(FEATURES) and all(math.isfinite(v) for v in x)


def test_a_fit_learns_which_signal_predicts_exactness():
    rows = []
    for n in range(200):  # likely fills (a high score) are right four times in five, unlikely ones one in five
        likely = n % 2 == 0
        right = (n % 10 < 8) if likely else (n % 10 < 2)
        rows.append((Signals("line", score=-0.2 if likely else -6.0, tokens=4), right))
    models = fit(rows)
    assert set(models) == {"line"} and models["line"].cases == 200
    calibration = Calibration({"base_sha256": "x", "adapter": None}, models)
    high = calibration.confidence(Signals("line", score=-0.2, tokens=4))
    low = calibration.confidence(Signals("line", score=-6.0, tokens=4))
    assert high == pytest.approx(0.8, abs=0.05) and low == pytest.approx(0.2, abs=0.05)
    assert calibration.confidence(Signals("block", score=-0.2, tokens=4)) is None  # no model of that kind


def test_a_calibration_file_round_trips_and_a_damaged_one_is_refused(tmp_path):
    model = Model([0.5] * len(FEATURES), [0.0] * len(FEATURES), [1.0] * len(FEATURES), 10, 3)
    c = Calibration({"base_sha256": "abc", "adapter": {"name": "a", "sha256": "d"}}, {"line": model}, {"cases": 10})
    c.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == c
    (tmp_path / "bad.json").write_text('{"version": 1, "features": ["bias"], "models": {}}')
    with pytest.raises(ValueError, match="another version"):
        Calibration.load(tmp_path / "bad.json")


def test_the_curve_and_the_calibration_error():
    points = [(0.9, True), (0.9, True), (0.9, False), (0.1, False), (0.1, False)]
    rows = {r["threshold"]: r for r in curve(points, [0.0, 0.5, 0.95])}
    assert rows[0.0]["coverage"] == 1.0 and rows[0.0]["precision"] == 0.4
    assert rows[0.5]["coverage"] == 0.6 and rows[0.5]["precision"] == pytest.approx(0.6667, abs=1e-4)
    assert rows[0.95]["shown"] == 0 and rows[0.95]["precision"] is None
    # bins: 0.9 against 2/3 right (3 fills), 0.1 against 0 right (2 fills)
    assert expected_calibration_error(points) == pytest.approx((3 * (0.9 - 2 / 3) + 2 * 0.1) / 5)
    assert expected_calibration_error([(1.0, True), (0.0, False)]) == 0.0


# -- through the engine ----------------------------------------------------------------------


def test_every_fill_and_runner_up_has_a_confidence_in_0_1(tiny_engine):
    for r in tiny_engine.infill_many(holes()):
        assert 0.0 <= r.confidence <= 1.0 and not r.confidence_calibrated  # the tiny model has no calibration
        assert len(r.alternative_confidences) == len(r.alternatives)
        assert all(0.0 <= c <= 1.0 for c in r.alternative_confidences)
        out = r.as_json()
        assert out["confidence"] == round(r.confidence, 4) and out["confidence_calibrated"] is False


def test_a_minimum_of_0_leaves_every_fill_as_it_is_and_a_higher_one_withholds(tiny_engine):
    plain = tiny_engine.infill_many(holes())
    at_zero = tiny_engine.infill_many([InfillRequest(**{**vars(r), "min_confidence": 0.0}) for r in holes()])
    assert [(r.text, r.alternatives, r.confidence) for r in at_zero] == \
           [(r.text, r.alternatives, r.confidence) for r in plain]
    assert not any(r.withheld for r in at_zero)
    for r, req in zip(plain, holes()):
        if not r.text:
            continue
        above = tiny_engine.infill(InfillRequest(**{**vars(req), "min_confidence": min(1.0, r.confidence + 1e-6)}))
        assert above.withheld and above.text == "" and above.alternatives == []
        at = tiny_engine.infill(InfillRequest(**{**vars(req), "min_confidence": r.confidence}))
        assert at.text == r.text and not at.withheld
        assert at.alternatives == [a for a, c in zip(r.alternatives, r.alternative_confidences) if c >= r.confidence]


@pytest.fixture
def own_checkpoint(tiny_checkpoint, tmp_path):
    """A copy of the tiny checkpoint, to write calibration files beside."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    return folder


def _calibration(fingerprint: dict) -> Calibration:
    weights = [0.0] * len(FEATURES)
    weights[0] = math.log(0.3 / 0.7)  # every fill: 0.3
    return Calibration(fingerprint, {"line": Model(weights, [0.0] * len(FEATURES), [1.0] * len(FEATURES))})


def test_a_calibration_for_this_model_is_used(own_checkpoint):
    engine = Engine(EngineConfig(model=str(own_checkpoint), adapter="none", library="none"))
    _calibration(engine.fingerprint()).save(own_checkpoint / CALIBRATION_FILE)
    engine = Engine(EngineConfig(model=str(own_checkpoint), adapter="none", library="none"))
    filled = [r for r in engine.infill_many(holes()) if r.text]
    assert filled and all(r.confidence_calibrated and r.confidence == pytest.approx(0.3) for r in filled)


def test_a_calibration_for_another_model_or_adapter_is_ignored_with_a_warning(own_checkpoint, caplog):
    engine = Engine(EngineConfig(model=str(own_checkpoint), adapter="none", library="none"))
    other = {**engine.fingerprint(), "base_sha256": "0" * 64}
    for fingerprint in (other, {**engine.fingerprint(), "adapter": {"name": "infill", "sha256": "1" * 64}}):
        _calibration(fingerprint).save(own_checkpoint / CALIBRATION_FILE)
        with caplog.at_level(logging.WARNING, logger="diffill.confidence"):
            engine = Engine(EngineConfig(model=str(own_checkpoint), adapter="none", library="none"))
        assert engine.calibration is None
        assert "another model or adapter" in caplog.text
        assert not any(r.confidence_calibrated for r in engine.infill_many(holes()))
        caplog.clear()
