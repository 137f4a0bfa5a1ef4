"""The radiometric model: estimators, the steps of a model, and the Mosaic that runs them."""
