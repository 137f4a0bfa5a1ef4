"""The optional compiled parts of spectralmatch: exact sums of small integers
(``spectralmatch.stats._sums``) and the conversion of corrected values to 8- and 16-bit
outputs (``spectralmatch.raster._conversion``). Where they cannot be built, the package works
the same without them (the same numbers from numpy, more slowly)."""

import sys

from setuptools import Extension, setup

optimize = [] if sys.platform == "win32" else ["-O3"]
# the conversion's float arithmetic must be numpy's, operation by operation: no fused
# multiply-add (MSVC does not fuse unless told to)
exact_floats = [] if sys.platform == "win32" else ["-ffp-contract=off"]


def compiled(name: str, source: str, flags: list[str]) -> Extension:
    return Extension(
        name,
        [source],
        depends=["spectralmatch/_compiled.h"],
        extra_compile_args=optimize + flags,
        optional=True,
    )


setup(
    ext_modules=[
        compiled("spectralmatch.stats._sums", "spectralmatch/stats/_sums.c", []),
        compiled(
            "spectralmatch.raster._conversion", "spectralmatch/raster/_conversion.c", exact_floats
        ),
    ]
)
