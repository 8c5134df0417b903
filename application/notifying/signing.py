"""Signing secrets and signed headers, as the Standard Webhooks scheme defines them.

`webhook-signature` is `v1,` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"))
where the secret is the base64 text after `whsec_`; the `standardwebhooks`
library (the scheme's reference implementation) computes it, and receivers can
verify with it or with a few lines of hmac (README, Webhooks).
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signed_headers(
    secret: str, delivery_id: str, timestamp: int, body: str
) -> dict[str, str]:
    """The three headers a receiver checks; `timestamp` in unix seconds."""
    at = datetime.fromtimestamp(timestamp, UTC)
    signature = Webhook(secret).sign(msg_id=delivery_id, timestamp=at, data=body)
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": str(signature),
    }
