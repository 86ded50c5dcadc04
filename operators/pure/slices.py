"""Slices: the combinations of event fields loginflow counts."""

from dataclasses import dataclass

from operators.pure.events import OPTIONAL_FIELDS

FIELDS: tuple[str, ...] = ("user_id", *OPTIONAL_FIELDS)
"""The event fields a slice may combine, in `LoginEvent` order."""


@dataclass(frozen=True)
class SliceSpec:
    """One combination of fields to count, and the smallest count worth emitting."""

    fields: tuple[str, ...]
    min_count: int

    @property
    def name(self) -> str:
        """The slice as written in SLICES and in output records: ``user_id+ip``."""
        return "+".join(self.fields)
