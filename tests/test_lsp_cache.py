"""The LRU infill cache with forwarding (lsp_server/cache.py)."""

from diffill.lsp_server.cache import Hole, InfillCache

TEXT = "def f(x):\n    return x\n"


def hole_after(text: str, anchor: str) -> Hole:
    return Hole.at(text, text.index(anchor) + len(anchor))


def test_hole_splits_at_the_cursor_line():
    h = hole_after(TEXT, "    ret")
    assert (h.before_line, h.line, h.after) == ("def f(x):\n", "    ret", "urn x\n")


def test_exact_hit_and_miss():
    cache = InfillCache()
    h = Hole("a\n", "    x = ", "\nb")
    assert cache.get(h, "k") is None
    cache.put(h, "k", ["compute(1)"])
    assert cache.get(h, "k") == ["compute(1)"]
    assert cache.get(h, "other settings") is None
    assert cache.get(Hole("a\n", "    x = ", "\nc"), "k") is None  # a different suffix


def test_typing_the_start_of_a_suggestion_forwards_the_rest():
    cache = InfillCache()
    cache.put(Hole("a\n", "    x = ", "\nb"), "k", ["compute(1)"])
    assert cache.get(Hole("a\n", "    x = com", "\nb"), "k") == ["pute(1)"]
    assert cache.get(Hole("a\n", "    x = cx", "\nb"), "k") is None  # typed something else
    assert cache.get(Hole("a\n", "    x = compute(1)", "\nb"), "k") is None  # typed all of it


def test_least_recently_used_entries_are_evicted():
    cache = InfillCache(capacity=2)
    holes = [Hole(f"{i}\n", "", "") for i in range(3)]
    cache.put(holes[0], "k", ["zero"])
    cache.put(holes[1], "k", ["one"])
    assert cache.get(holes[0], "k") == ["zero"]  # now the most recent
    cache.put(holes[2], "k", ["two"])
    assert len(cache) == 2
    assert cache.get(holes[1], "k") is None and cache.get(holes[0], "k") == ["zero"]


def test_empty_infills_are_not_cached():
    cache = InfillCache()
    cache.put(Hole("", "x", ""), "k", [""])
    cache.put(Hole("", "y", ""), "k", [])
    assert len(cache) == 0


def test_the_runners_up_are_kept_and_forwarded_in_their_order():
    cache = InfillCache()
    h = Hole("a\n", "    x = ", "\nb")
    cache.put(h, "k", ["compute(1)", "", "count", "other"])
    assert cache.get(h, "k") == ["compute(1)", "count", "other"]
    assert cache.get(Hole("a\n", "    x = co", "\nb"), "k") == ["mpute(1)", "unt"]
    assert cache.get(Hole("a\n", "    x = ot", "\nb"), "k") == ["her"]  # a runner-up typed into
