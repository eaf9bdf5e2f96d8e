"""The word a cursor is in, for front ends (light: no model is loaded). A fill at a cursor right
after a word's characters continues that word; a completion item replaces the typed part with it
and the fill, so that the editor's filter matches the item (``proc`` -> ``process_item(x)``)."""

from __future__ import annotations

from diffill.model.lead import typed_word


def typed_part(text: str, offset: int) -> str:
    """The part of a word typed before ``offset`` (identifier characters back to the word's start);
    "" when ``offset`` is not right after one, or the word goes on after it. The engine heals such
    words by the same rule (``InfillResult.typed``)."""
    return typed_word(text, offset)
