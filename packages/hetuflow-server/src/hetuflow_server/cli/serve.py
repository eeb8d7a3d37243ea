"""``hetuflow-server serve``: the application on Hypercorn until SIGTERM or SIGINT, then a graceful stop.

The listening address is tried and the container started before Hypercorn takes over, so a startup failure
(port in use, database unreachable, bad key file) is reported as one plain line instead of an ASGI lifespan
traceback. Once started, the garbage collector is tuned for a long-lived server (`tune_gc`). On SIGTERM/SIGINT
the server stops accepting connections, gives in-flight requests ``server.graceful_timeout_secs`` to finish,
then stops the container (loops, server row, pool, embedded PostgreSQL) and exits 0.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import ssl
from typing import Final

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig

from hetuflow_server.application import ServerApplication, build_app
from hetuflow_server.cli.parser import CommandFailed
from hetuflow_server.config import ConfigError, ServerConfig

__all__ = ["GC_THRESHOLDS", "check_bind", "hypercorn_config", "serve", "tune_gc"]

logger = logging.getLogger(__name__)

GC_THRESHOLDS: Final = (1_000, 10, 100)
"""The collector's thresholds while serving (CPython's default is ``(700, 10, 10)``). A full collection scans
every object of every agent connection (about 200 each) and stalls them all at once, for ~1 µs per object:
hundreds of milliseconds with a thousand agents. It runs when objects promoted since the last one reach a
quarter of the old ones *and* after ``threshold[2]`` middle collections; at 100 instead of 10 that is after
about a million allocations, so a fleet of thousands connecting does not trigger one, and a steady server
runs one rarely. The young and middle generations stay small (1 000 objects, and ten times that), so their
pauses stay in the milliseconds even when everything allocated survives (a registration storm)."""

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_BIND_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})
_TLS_KEYS = "server.tls_cert/server.tls_key"


def hypercorn_config(config: ServerConfig) -> HypercornConfig:
    """Hypercorn's settings for ``config``: bind address, TLS, graceful and keep-alive timeouts, our
    loggers."""
    server = config.server
    hc = HypercornConfig()
    host = f"[{server.host}]" if ":" in server.host else server.host
    hc.bind = [f"{host}:{server.port}"]
    hc.graceful_timeout = server.graceful_timeout_secs
    # Hypercorn's own default (5 s) equals httpx's pool expiry: a client reusing a connection idle for just
    # under 5 s meets the server closing it and gets no response at all.
    hc.keep_alive_timeout = server.keep_alive_timeout_secs
    # Records go to the handlers the CLI configured (text or JSON), not to Hypercorn's own.
    hc.errorlog = logging.getLogger("hypercorn.error")
    # Hypercorn builds the fields of an access record for every request before the logger can drop it; the
    # access log is quiet unless the log level is debug, so hand it over only when it would print.
    access = logging.getLogger("hypercorn.access")
    hc.accesslog = access if access.isEnabledFor(logging.INFO) else None
    hc.include_server_header = False
    if server.tls_cert is not None and server.tls_key is not None:
        _check_tls(server.tls_cert.as_posix(), server.tls_key.as_posix())
        hc.certfile = server.tls_cert.as_posix()
        hc.keyfile = server.tls_key.as_posix()
    return hc


async def serve(config: ServerConfig) -> int:
    """Run the server until a stop signal; the exit status (0 after a clean stop)."""
    hc = hypercorn_config(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if not stop.is_set():
            logger.info("received %s, shutting down", signum.name)
        stop.set()
        application.draining.set()

    check_bind(hc)
    application = ServerApplication(config)
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await application.start()
        app = build_app(application)
        tune_gc()
        application.metrics.watch_gc_pauses()
        if not stop.is_set():
            await hypercorn_serve(app, hc, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    finally:
        application.metrics.unwatch_gc_pauses()
        await application.stop()
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    logger.info("server %s stopped", config.server.name)
    return 0


def tune_gc() -> None:
    """Tune the garbage collector for serving: what start-up created (modules, classes, the application) lives
    as long as the process, so it is frozen out of every later collection, and the thresholds become
    ``GC_THRESHOLDS``. Called once the application is started, in the serving process only."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    logger.info(
        "garbage collector tuned for serving: %d start-up objects frozen, thresholds %s",
        gc.get_freeze_count(),
        gc.get_threshold(),
    )


def check_bind(hc: HypercornConfig) -> None:
    """Fail with one plain line (`CommandFailed`) when the address of ``hc`` cannot be listened on."""
    # Bind once before starting anything (database, embedded PostgreSQL), so that a port in use is reported
    # at once and plainly; Hypercorn binds again right after (SO_REUSEADDR makes that immediate).
    try:
        sockets = hc.create_sockets()
    except OSError as exc:
        if exc.errno not in _BIND_ERRNOS:
            raise
        raise CommandFailed(f"cannot listen on {hc.bind[0]}: {exc.strerror}") from None
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets):
        sock.close()


def _check_tls(cert: str, key: str) -> None:
    # Hypercorn would fail on these only after the application started; check them up front instead.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(_TLS_KEYS, f"file not found: {exc.filename}") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(_TLS_KEYS, f"cannot load {cert} with {key}: {exc}") from None
