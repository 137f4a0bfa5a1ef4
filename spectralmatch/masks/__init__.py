"""Masks that leave pixels out of the statistics of a fit (they are still transformed).

A mask needs only a target's name and CRS and the pixel grid of the values it judges
(:class:`~spectralmatch.masks.base.MaskTarget`, :class:`~spectralmatch.geo.grid.PixelGrid`),
never an :class:`~spectralmatch.Image`.
"""
