"""Batch refactoring: fill placeholder bodies, fill markers or query captures across a codebase."""

from diffill.refactor.files import FileFilter
from diffill.refactor.runner import FileOutcome, RefactorConfig, Summary, run_refactor

__all__ = ["FileFilter", "FileOutcome", "RefactorConfig", "Summary", "run_refactor"]
