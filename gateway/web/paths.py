"""Ids in page URLs, parsed by the API's own parameter parsers before any lookup.

A malformed id (a NUL byte, a wrong prefix, too long) names nothing that can exist:
the page answers 404 at once instead of handing the text to the database.
"""

from __future__ import annotations

from gateway.http.params import Identifier, WholeNumber
from gateway.regulator.registry import KEYID
from provisioning import ids, tokens

TENANT_ID = Identifier("tenant_id", ids.UUID, location="path", description="The tenant's id")
PEER_ID = Identifier("peer_id", ids.UUID, location="path", description="The peer's id")
USER_ID = Identifier("user_id", ids.UUID, location="path", description="The user's id")
TOKEN_ID = Identifier("token_id", tokens.TOKEN_ID, location="path", description="The token's id")
KEY_ID = Identifier("keyid", KEYID, location="path", description="The regulator key's id")
LOG_INDEX = WholeNumber(
    "index", minimum=0, maximum=2**62, location="path", description="A log entry's index"
)
