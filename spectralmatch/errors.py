"""Exceptions raised by spectralmatch."""

from __future__ import annotations


class SpectralMatchError(ValueError):
    """Bad input or an impossible request; the message names the file and the problem."""


class NotFittedError(SpectralMatchError, AttributeError):
    """A model or step was used before ``fit`` was called."""


class SpectralMatchWarning(UserWarning):
    """Something was clipped, skipped or assumed; the message says what and where."""
