"""``demo:digits`` (digits 5-9) and ``demo:digits-b`` (the half of 5-9 no demo source has seen): scikit-learn's bundled digits."""
from __future__ import annotations

from transferlab.errors import UserError, closest
from transferlab.sources import DATA_SOURCES

HALVES = {"digits": None, "digits-5-9": None, "digits-b": "B"}


@DATA_SOURCES.register("demo")
def demo_data(name: str, model=None):
    from transferlab.data.builtin import digits_target

    if name not in HALVES:
        raise UserError(f"unknown demo data '{name}'{closest(name, HALVES)}",
                        "use demo:digits (digits 5-9) or demo:digits-b (the half no demo source has seen)")
    return digits_target(half=HALVES[name])
