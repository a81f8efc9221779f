"""The one error tree. Every failure hquery expects is an :class:`HqueryError`.

Messages say what is wrong and what to do in library terms ("build an index
first"); they name no command-line flag. The command line catches the base
class, prints the message and adds the matching command from :attr:`needs`.

>>> try:
...     raise NotReadyError("no index yet; build one first", needs="index")
... except HqueryError as exc:
...     (str(exc), exc.needs)
('no index yet; build one first', 'index')
"""

from __future__ import annotations


class HqueryError(Exception):
    """Base of every error hquery raises on purpose.

    Parameters
    ----------
    message
        What is wrong, and what to do, without naming a command-line flag.
    needs
        The step that would fix it, when one would: a key the CLI turns into a
        command (``"index"``, ``"train align"``, ...).
    context
        Values that command needs (``collection="hallmark"``).
    """

    def __init__(self, message: str, *, needs: str | None = None, **context: str):
        super().__init__(message)
        self.needs = needs
        self.context = context


class InputError(HqueryError, ValueError):
    """Input that cannot be used; the message names the file, row, sample or gene."""


class StoreError(HqueryError, RuntimeError):
    """A store is missing, foreign, busy or inconsistent."""


class NotReadyError(StoreError):
    """The store lacks a step this needs (an index, a model, embeddings); :attr:`needs` names it."""


class PromptError(HqueryError, ValueError):
    """A prompt that names no gene set, or more than one, or a set too small to score."""


class GeneSetTooSmall(PromptError):
    """Fewer of a set's genes are in a gene universe than a score needs."""


class SplitLeakError(HqueryError, RuntimeError):
    """A patient appears on both sides of a split: a bug, never the user's input."""
