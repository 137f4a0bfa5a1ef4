"""Rasters on disk: one image, a collection of them, output paths and atomic writing."""
