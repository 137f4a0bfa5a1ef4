"""``python -m spectralmatch.cli``: the same as the ``spectralmatch`` command."""

from .main import main

main()
