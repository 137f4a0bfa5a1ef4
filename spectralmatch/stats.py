"""Mergeable streaming statistics.

:class:`Moments` holds per-band count, mean and sum of squared deviations (``M2``) in
float64. Partial results from windows, threads or cluster workers merge exactly with
Chan et al.'s pairwise update, which stays accurate for data with a large pedestal
(uint16 digital numbers, reflectance with an offset) where naive sums of squares lose
every significant digit.
"""

from __future__ import annotations

import numpy as np
from attrs import define, field


def _float_array(values) -> np.ndarray:
    return np.array(values, dtype=np.float64, ndmin=1)


@define
class Moments:
    """Count, mean and M2 (sum of squared deviations) per band.

    Parameters
    ----------
    count, mean, m2 : array-like of shape (n_bands,)

    Examples
    --------
    >>> import numpy as np
    >>> values = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    >>> whole = Moments.from_array(values, np.ones_like(values, dtype=bool))
    >>> left = Moments.from_array(values[:, :, :1], np.ones((1, 2, 1), dtype=bool))
    >>> right = Moments.from_array(values[:, :, 1:], np.ones((1, 2, 1), dtype=bool))
    >>> bool(np.allclose(left.merge(right).std, whole.std))
    True
    """

    count: np.ndarray = field(converter=_float_array)
    mean: np.ndarray = field(converter=_float_array)
    m2: np.ndarray = field(converter=_float_array)

    @classmethod
    def empty(cls, n_bands: int) -> Moments:
        """Moments of no pixels."""
        zeros = np.zeros(n_bands)
        return cls(zeros, zeros, zeros)

    @classmethod
    def from_array(cls, values: np.ndarray, valid: np.ndarray) -> Moments:
        """Moments of ``values`` where ``valid`` is true.

        Parameters
        ----------
        values : ndarray of shape (n_bands, rows, cols)
        valid : bool ndarray of the same shape
        """
        n_bands = values.shape[0]
        flat = values.reshape(n_bands, -1)
        mask = valid.reshape(n_bands, -1)
        count = mask.sum(axis=1, dtype=np.float64)
        total = np.where(mask, flat, 0).sum(axis=1, dtype=np.float64)
        mean = np.divide(total, count, out=np.zeros(n_bands), where=count > 0)
        deviation = np.where(mask, flat - mean[:, None], 0.0)
        m2 = np.einsum("ij,ij->i", deviation, deviation)
        return cls(count, mean, np.maximum(m2, 0.0))

    def merge(self, other: Moments) -> Moments:
        """Moments of the union of both pixel sets (exact, order-independent)."""
        count = self.count + other.count
        safe = np.where(count > 0, count, 1.0)
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / safe
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / safe
        return Moments(count, mean, m2)

    def affine(self, gain: np.ndarray, offset: np.ndarray) -> Moments:
        """Moments of ``gain * x + offset`` per band, derived exactly from these."""
        gain = np.asarray(gain, dtype=np.float64)
        return Moments(self.count, gain * self.mean + offset, gain * gain * self.m2)

    @property
    def variance(self) -> np.ndarray:
        """Population variance per band (0 where there are no pixels)."""
        return np.divide(self.m2, self.count, out=np.zeros_like(self.m2), where=self.count > 0)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per band."""
        return np.sqrt(self.variance)

    def to_dict(self) -> dict:
        """Plain lists, for JSON."""
        return {"count": self.count.tolist(), "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Moments:
        """Inverse of :meth:`to_dict`."""
        return cls(data["count"], data["mean"], data["m2"])
