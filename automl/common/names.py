"""Resource IDs and names shared by every service (AIP-122)."""

from __future__ import annotations

import re

from automl.common.errors import FieldViolation, invalid_field

ID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]$")
ID_RULE = "2 to 63 letters, digits and hyphens, starting with a letter and not ending with a hyphen"


def id_violation(field: str, value: str) -> FieldViolation | None:
    """Return a field violation when `value` is not a valid resource ID, naming the offending character."""
    if ID_PATTERN.match(value):
        return None
    if not value:
        return FieldViolation(field, f"is required; use {ID_RULE}")
    bad = [c for c in value if not (c.isascii() and (c.isalnum() or c == "-"))]
    if bad:
        return FieldViolation(field, f"'{value}' contains the character {bad[0]!r}; use {ID_RULE}")
    if len(value) < 2 or len(value) > 63:
        return FieldViolation(field, f"'{value}' has {len(value)} characters; use {ID_RULE}")
    if not value[0].isalpha():
        return FieldViolation(field, f"'{value}' starts with {value[0]!r}; use {ID_RULE}")
    return FieldViolation(field, f"'{value}' ends with a hyphen; use {ID_RULE}")


def parse_name(name: str, collection: str, field: str = "name") -> str:
    """Return the ID of `{collection}/{id}`, or raise InvalidArgument naming `field`."""
    prefix = f"{collection}/"
    if not name.startswith(prefix) or "/" in name[len(prefix):] or not name[len(prefix):]:
        raise invalid_field(field, f"'{name}' is not a resource name; use {collection}/{{id}}")
    return name[len(prefix):]


def parse_iteration_name(name: str, field: str = "name") -> tuple[str, int]:
    """Split `experiments/{id}/iterations/{index}` into experiment ID and index."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "experiments" or parts[2] != "iterations" or not parts[3].isdigit():
        raise invalid_field(field, f"'{name}' is not an iteration name; use experiments/{{id}}/iterations/{{index}}")
    return parts[1], int(parts[3])
