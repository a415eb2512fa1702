"""Form errors shown next to their fields."""

from __future__ import annotations

from pydantic import ValidationError


class FieldErrors(dict[str, str]):
    """Field name to message; ``form`` holds errors that belong to no single field."""

    def add(self, field: str, message: str) -> None:
        self.setdefault(field, message)

    def add_validation(self, error: ValidationError, *, prefix: str = "") -> None:
        for problem in error.errors():
            location = [str(part) for part in problem.get("loc", ())]
            field = location[0] if location else "form"
            if (
                problem.get("type") in {"string_too_short", "missing"}
                and problem.get("ctx", {}).get("min_length", 1) == 1
            ):
                self.add(prefix + field, "Fill in this field.")
                continue
            message = problem.get("msg", "is not valid").removeprefix("Value error, ")
            self.add(prefix + field, message[:1].upper() + message[1:] + ".")
