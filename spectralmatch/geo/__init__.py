"""Geometry of pixel grids: windows, block grids and the overlap graph (no pixel is read here)."""
