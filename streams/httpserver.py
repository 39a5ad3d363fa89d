"""The worker's HTTP endpoints: ``/metrics`` (Prometheus), ``/ready`` and ``/live``.

Where it sits: beside the agents, in a daemon thread, so a busy event loop never makes a scrape
or a probe time out. ``/ready`` answers from :class:`streams.health.Readiness` (200 when
every
owned partition is restored and serving, else 503 with the report as JSON), which is what a
Kubernetes readinessProbe and a load balancer need; ``/live`` answers 200 while the process can
serve HTTP at all (livenessProbe: restart only a process that is wedged, never one that is
slowly restoring). Reading the readiness report from this thread is safe: it copies small dicts
the event loop replaces whole.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import orjson
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from streams.health import Readiness

__all__ = ["start_server"]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape or probe."""

    def log_message(self, format: str, *args: Any) -> None:
        return


def app(registry: CollectorRegistry, readiness: Readiness | None) -> Any:
    """The WSGI app: ``/ready``, ``/live``, anything else is the Prometheus exposition."""
    metrics_app = make_wsgi_app(registry)

    def respond(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/live":
            return _json(start, "200 OK", {"live": True})
        if path == "/ready":
            if readiness is None:
                return _json(start, "503 Service Unavailable", {"ready": False, "pending": {}})
            report = readiness.report()
            status = "200 OK" if report.ready else "503 Service Unavailable"
            return _json(start, status, asdict(report))
        result: Iterable[bytes] = metrics_app(environ, start)
        return result

    return respond


def _json(start: StartResponse, status: str, doc: dict[str, Any]) -> list[bytes]:
    body = orjson.dumps(doc)
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def start_server(
    host: str, port: int, registry: CollectorRegistry, readiness: Readiness | None
) -> Any:
    """Bind ``host:port`` (``port`` 0: any free port, see ``server.server_port``) and serve in a
    daemon thread; stop it with :func:`streams.metrics.shutdown`."""
    server = make_server(
        host, port, app(registry, readiness), ThreadingWSGIServer, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, daemon=True, name="loa-http").start()
    return server
