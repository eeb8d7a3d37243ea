"""Who made a request: the verified identity and scope carried by a token.

Scopes form a small lattice: ``admin`` includes ``read``; ``agent`` stands alone, so an agent's token opens
the agent WebSocket and nothing of the REST API that needs ``read`` or ``admin``.
"""

from __future__ import annotations

from uuid import UUID

import msgspec

from hetuflow_core.enums import TokenScope

__all__ = ["Principal", "scope_satisfies"]

_GRANTS: dict[TokenScope, frozenset[TokenScope]] = {
    TokenScope.ADMIN: frozenset({TokenScope.ADMIN, TokenScope.READ}),
    TokenScope.READ: frozenset({TokenScope.READ}),
    TokenScope.AGENT: frozenset({TokenScope.AGENT}),
}


def scope_satisfies(held: TokenScope, required: TokenScope) -> bool:
    """True when a token of scope ``held`` may do what ``required`` guards."""
    return required in _GRANTS[held]


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The bearer of a verified token: ``subject`` is the agent id for agent tokens, else the token's name."""

    subject: str
    scope: TokenScope
    jti: UUID
    name: str

    def satisfies(self, required: TokenScope) -> bool:
        """True when this principal may do what ``required`` guards."""
        return scope_satisfies(self.scope, required)
