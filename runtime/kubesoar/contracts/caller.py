"""Who may call a runtime pod: the contract between operator, router and runtime.

Every Playbook has a caller token, derived from the operator's signing key
(`caller_token`), which the router holds too. A pod gets its token the way it gets its
code: the artifact server sends it with the signed, expiring artifact download
(`TOKEN_HEADER`), and `kubesoar fetch` writes it to the pod's workspace (`TOKEN_FILE`).
No Secret is created, so the operator needs no right to write Secrets.

The router and the operator send it as
`Authorization: Bearer <token>` on every `/v1/...` request; a pod compares it in
constant time and refuses everyone else with 401. So a pod of another tenant, which
can reach the pod's address when no NetworkPolicy is enforced, can neither post runs
nor read the report.

The router also mixes the token into idempotency keys (`secret_idempotency_key`): a key
is no longer computable from the alert alone, so nobody can plant a decoy run under the
key the real alert will carry.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from kubesoar import _bearer as bearer

TOKEN_HEADER: Final = "X-Kubesoar-Caller-Token"  # noqa: S105 - a header name
"""Response header of the artifact server carrying the Playbook's token to `kubesoar fetch`."""
TOKEN_FILE: Final = "caller-token"  # noqa: S105 - a file name
"""File in the workspace (beside `src/`) the init container writes and the runtime reads."""
AUTH_ENV: Final = "KUBESOAR_CALLER_AUTH"
"""`required` in every pod the operator renders: the runtime refuses to serve without it."""


def caller_token(signing_key: bytes, namespace: str, playbook: str) -> str:
    """The token of one Playbook: stable for a key, unguessable without it."""
    message = f"runtime-caller\0{namespace}\0{playbook}".encode()
    return hmac.new(signing_key, message, hashlib.sha256).hexdigest()


def authorization(token: str) -> str:
    return f"Bearer {token}"


def is_authorized(header: str | None, token: bytes) -> bool:
    """Constant-time check of an `Authorization` header against the pod's token."""
    presented = bearer.presented_token(header)
    return presented is not None and bearer.matches(presented, token)


def secret_idempotency_key(token: str, key: str) -> str:
    """`key` with a part only the token's holders can compute."""
    tag = hmac.new(token.encode(), key.encode(), hashlib.sha256).hexdigest()[:16]
    return f"{key}:{tag}"
