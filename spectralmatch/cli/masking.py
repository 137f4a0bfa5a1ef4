"""What the masking options of the commands leave out of the fit: areas given as files,
expressions over the bands, NDVI, and clouds with their shadows. Masked pixels are left out
of every statistic and still transformed."""

from __future__ import annotations

from typing import Any

import click

from ..errors import SpectralMatchError

ROLES = ("blue", "green", "red", "nir", "swir")


def band_roles(context: click.Context, parameter: click.Parameter, value: str | None):
    """``"red=1,nir=4"`` -> ``{"red": 1, "nir": 4}``."""
    if not value:
        return {}
    roles: dict[str, int] = {}
    for item in value.split(","):
        role, equals, band = item.strip().partition("=")
        if not equals or role not in ROLES or not band.isdigit() or int(band) < 1:
            raise click.BadParameter(
                f"{item.strip()!r}: give ROLE=N with ROLE one of {', '.join(ROLES)} and N a "
                "band number from 1, e.g. red=1,nir=4",
                context,
                parameter,
            )
        roles[role] = int(band)
    return roles


def fit_mask(image: Any, options: dict[str, Any]) -> Any:
    """The mask of ``image`` (an :class:`~spectralmatch.Image`) that the options ask for:
    what any of them excludes (None for none)."""
    from ..masks.base import combine
    from ..masks.convert import as_mask
    from ..masks.expression import ExpressionMask

    masks = [as_mask(path) for path in options["exclude"]]
    masks += [ExpressionMask(text) for text in options["mask_expressions"]]
    if options["mask_ndvi"]:
        masks.append(_ndvi_mask(image, options["mask_ndvi"], options["band_roles"]))
    if options["mask_cloud"]:
        masks.append(_cloud_mask(options["band_roles"]))
    return combine(*masks)


def _ndvi_mask(image: Any, condition: str, roles: dict[str, int]) -> Any:
    from ..masks.cloud import band_named
    from ..masks.expression import ExpressionMask

    bands = {
        role: roles.get(role) or band_named(role, image.descriptions) for role in ("red", "nir")
    }
    missing = [role for role, band in bands.items() if band is None]
    if missing:
        raise SpectralMatchError(
            f"{image.path}: --mask-ndvi needs the {' and '.join(missing)} band; give "
            f"--bands {','.join(f'{role}=N' for role in missing)} (its band descriptions "
            f"are {image.descriptions})"
        )
    red, nir = f"B{bands['red']}", f"B{bands['nir']}"
    return ExpressionMask(f"({nir} - {red}) / ({nir} + {red}) {condition}")


def _cloud_mask(roles: dict[str, int]) -> Any:
    from ..masks.cloud import CloudMask

    return CloudMask(
        blue_band=roles.get("blue"),
        green_band=roles.get("green"),
        red_band=roles.get("red"),
        nir_band=roles.get("nir"),
        swir_band=roles.get("swir"),
    )
