"""Settings from initializationOptions and didChangeConfiguration (lsp_server/settings.py)."""

from diffill.lsp_server.settings import Settings, merge


def test_known_keys_are_applied_and_unknown_keys_ignored():
    s, problems = merge(Settings(), {"model": "/m", "adapter": "none", "useWorkspaceAdapter": False,
                                     "maxTokens": 32, "threshold": 1, "beam": 2, "constraint": False,
                                     "languages": ["python", "rust"], "fancyNewKey": {"a": 1}})
    assert problems == []
    assert s == Settings(model="/m", adapter="none", use_workspace_adapter=False, max_tokens=32,
                         threshold=1.0, beam=2, constraint=False, languages=("python", "rust"))


def test_the_diffill_section_is_unwrapped():
    s, _ = merge(Settings(), {"diffill": {"threshold": 0.5}, "other": {}})
    assert s.threshold == 0.5


def test_bad_values_are_reported_and_old_values_kept():
    old = Settings(threshold=0.7, max_tokens=16)
    s, problems = merge(old, {"threshold": 3, "maxTokens": True, "languages": "python", "constraint": "yes",
                              "model": "", "beam": 1.5})
    assert s == old
    assert len(problems) == 6
    assert merge(old, {"beam": 17})[1] and merge(old, {"beam": -1})[1]
    assert any("threshold" in p and "0.7" in p for p in problems)


def test_nulls_reset_optional_values():
    s, problems = merge(Settings(model="/m", max_tokens=8, languages=("go",), beam=0),
                        {"model": None, "maxTokens": None, "languages": None, "beam": None})
    assert problems == [] and s == Settings()


def test_non_object_settings_are_rejected_and_none_is_no_change():
    old = Settings(threshold=0.2)
    assert merge(old, None) == (old, [])
    s, problems = merge(old, [1, 2])
    assert s == old and "must be an object" in problems[0]


def test_enabled_languages():
    assert Settings().enabled_for("anything")
    assert Settings(languages=("python",)).enabled_for("python")
    assert not Settings(languages=("python",)).enabled_for("rust")


def test_min_confidence_is_a_fraction_with_a_default_that_abstains():
    from diffill.confidence import MIN_CONFIDENCE

    assert Settings().min_confidence == MIN_CONFIDENCE > 0
    s, problems = merge(Settings(), {"minConfidence": 0})
    assert problems == [] and s.min_confidence == 0.0
    for bad in (1.5, -0.1, "high", True):
        s, problems = merge(Settings(), {"minConfidence": bad})
        assert s.min_confidence == MIN_CONFIDENCE and "minConfidence" in problems[0]


def test_context_reuse_is_true_false_or_null_for_the_engine_s_own_setting():
    on, problems = merge(Settings(), {"contextReuse": True})
    assert problems == [] and on.context_reuse is True
    assert merge(on, {"contextReuse": None})[0].context_reuse is None
    kept, problems = merge(on, {"contextReuse": "yes"})
    assert kept.context_reuse is True and "contextReuse" in problems[0]
