"""Errors users see: one line naming the place (`file:line:col` or a CR field path)."""

from __future__ import annotations


class DevjobsError(Exception):
    """Invalid input or a failed operation, reported as `devjobs: error: PLACE: MESSAGE`.

    Raised anywhere; caught once by the CLI, which prints it and exits 1 with nothing
    on stdout. `place` is empty when there is no better place than the command itself.
    """

    def __init__(self, place: str, message: str) -> None:
        super().__init__(f"{place}: {message}" if place else message)
        self.place = place
        self.message = message

    def __str__(self) -> str:
        text = f"{self.place}: {self.message}" if self.place else self.message
        # One line, always: multi-line details (e.g. a list of candidates) are joined.
        return " ".join(text.split("\n"))
