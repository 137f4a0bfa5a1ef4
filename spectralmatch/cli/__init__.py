"""The ``spectralmatch`` command line: one module per command, as rasterio's ``rio`` does."""
