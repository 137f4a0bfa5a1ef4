"""Raster operations of the mosaic workflow: align, clip, seamlines, merge."""
