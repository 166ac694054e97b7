"""Page tokens for List methods (AIP-158): opaque to clients, an offset inside."""

from __future__ import annotations

import base64
import json

from automl.common.errors import invalid_field

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int, default: int = DEFAULT_PAGE_SIZE) -> int:
    """Return the page size to use: `default` for 0, capped at MAX_PAGE_SIZE; negative is invalid."""
    if requested < 0:
        raise invalid_field("page_size", f"{requested} is negative; use 0 for the default or up to {MAX_PAGE_SIZE}")
    return min(requested or default, MAX_PAGE_SIZE)


def encode_token(offset: int, scope: str) -> str:
    """Return the token of the page that starts at `offset` of the listing `scope`."""
    payload = json.dumps({"offset": offset, "scope": scope}).encode()
    return base64.urlsafe_b64encode(payload).decode()


def decode_token(token: str, scope: str) -> int:
    """Return the offset in `token`; 0 for an empty token.

    Raises
    ------
    InvalidArgument
        On `page_token` when the token was not issued for this listing.
    """
    if not token:
        return 0
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = int(payload["offset"])
        valid = payload.get("scope") == scope and offset >= 0
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise invalid_field("page_token", f"'{token}' is not a token returned by this List call; "
                                          "pass next_page_token from the previous page unchanged")
    return offset
