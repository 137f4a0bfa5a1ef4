"""``python -m spectralmatch``: the command line, as the installed ``spectralmatch``."""

from .cli.main import main

if __name__ == "__main__":  # pragma: no cover
    main(prog_name="spectralmatch")
