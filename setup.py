"""The optional compiled part of spectralmatch: exact sums of small integers
(``spectralmatch.stats._sums``). Where it cannot be built, the package works the same
without it (the same numbers from numpy, more slowly)."""

import sys

from setuptools import Extension, setup

optimize = [] if sys.platform == "win32" else ["-O3"]
setup(
    ext_modules=[
        Extension(
            "spectralmatch.stats._sums",
            ["spectralmatch/stats/_sums.c"],
            extra_compile_args=optimize,
            optional=True,
        )
    ]
)
