"""``python -m spectralmatch.cli``: the same as the ``spectralmatch`` command."""

from .main import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="spectralmatch")
