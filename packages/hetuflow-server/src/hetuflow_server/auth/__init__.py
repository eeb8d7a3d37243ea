"""Authentication and authorization: the server key, signed and encrypted bearer tokens, the endpoint guard.

- `keys`: the P-256 private key file (``keygen``, generated at first start).
- `tokens`: signing, sealing and opening tokens (HS256 JWS inside a JWE, ECDH-ES + A256GCM); the one
  jwcrypto boundary.
- `service`: `TokenService` issues, lists, revokes and verifies tokens against ``sched_token``, and ends the
  long connections of revoked tokens.
- `watch`: the live connections of each token.
- `guard`: `authorize` / `requires` for Starlette endpoints and the agent WebSocket upgrade.
"""

from __future__ import annotations

from hetuflow_server.auth.guard import TokenVerifier, authorize, bearer_token, principal_of, requires
from hetuflow_server.auth.keys import KeyFileError, generate_key, load_key, load_or_create_key, write_key
from hetuflow_server.auth.principal import Principal, scope_satisfies
from hetuflow_server.auth.service import TokenService
from hetuflow_server.auth.tokens import Claims, TokenCodec

__all__ = [
    "Claims",
    "KeyFileError",
    "Principal",
    "TokenCodec",
    "TokenService",
    "TokenVerifier",
    "authorize",
    "bearer_token",
    "generate_key",
    "load_key",
    "load_or_create_key",
    "principal_of",
    "requires",
    "scope_satisfies",
    "write_key",
]
