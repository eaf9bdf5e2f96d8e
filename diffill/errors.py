"""The one exception type front ends turn into exit code 2 or an LSP error."""


class DiffillError(Exception):
    """Bad input or a missing resource, with a message fit for the user."""


class UnknownLanguageError(DiffillError):
    """A request in a language the model was not trained on, which no setting allows (diffill.languages)."""
