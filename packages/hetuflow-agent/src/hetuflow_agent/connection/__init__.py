"""The agent's link to the servers: WebSocket client, reconnecting session, outbox of unacked reports."""

from __future__ import annotations

from hetuflow_agent.connection.backoff import Backoff
from hetuflow_agent.connection.outbox import Outbox, OutboxEntry
from hetuflow_agent.connection.runner import TaskRunner
from hetuflow_agent.connection.session import Session
from hetuflow_agent.connection.url import AGENT_ENDPOINT_PATH, ServerUrl, make_ssl_context, parse_server_url
from hetuflow_agent.connection.websocket import AGENT_ID_HEADER, WebSocket, connect

__all__ = [
    "AGENT_ENDPOINT_PATH",
    "AGENT_ID_HEADER",
    "Backoff",
    "Outbox",
    "OutboxEntry",
    "ServerUrl",
    "Session",
    "TaskRunner",
    "WebSocket",
    "connect",
    "make_ssl_context",
    "parse_server_url",
]
