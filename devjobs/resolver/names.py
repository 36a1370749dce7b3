"""Job names become parts of Kubernetes object names and condition types, so they must
be RFC 1123 labels. Names that can be made valid are normalised (with a warning);
the rest are errors at their place."""

from __future__ import annotations

import re

from devjobs.errors import DevjobsError

MAX_NAME = 63
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME and bool(_LABEL.match(name))


def normalise_name(name: str, place: str) -> tuple[str, str | None]:
    """Return `(valid_name, warning)`; warning is None when `name` was already valid.

    Lower-cases, turns runs of other characters (`_`, spaces, `:`, `.`) into `-`,
    trims dashes. Raises DevjobsError when nothing usable is left or it is too long.
    """
    if is_valid_name(name):
        return name, None
    candidate = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not candidate:
        raise DevjobsError(place, f"job name {name!r} cannot become a Kubernetes name")
    if len(candidate) > MAX_NAME:
        raise DevjobsError(
            place, f"job name {name!r} is longer than {MAX_NAME} characters once normalised"
        )
    return candidate, f"{place}: job name {name!r} normalised to {candidate!r}"
