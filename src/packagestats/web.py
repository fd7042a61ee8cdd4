"""The operator's HTTP endpoint: Prometheus metrics and shields.io badges.

Badges are served only for resources that opt in with the `packagestats.dev/badge: "true"` annotation;
every other path, resource or package answers 404 alike, so that nothing about them leaks.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from packagestats.badges import badge
from packagestats.metrics import Metrics, Observations

_NOT_FOUND = {"message": "not found"}


def app(metrics: Metrics, observations: Observations) -> web.Application:
    async def serve_metrics(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def serve_badge(request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        seen = observations.get(key)
        doc = badge(seen.status, request.match_info.get("package")) if seen is not None and seen.badge else None
        if doc is None:
            return web.json_response(_NOT_FOUND, status=404)
        # Short caching: shields.io and browsers may keep it for a few minutes.
        return web.json_response(doc, headers={"Cache-Control": "max-age=300"})

    application = web.Application()
    application.router.add_get("/metrics", serve_metrics)
    application.router.add_get("/badge/{namespace}/{name}", serve_badge)
    application.router.add_get("/badge/{namespace}/{name}/{package:.+}", serve_badge)
    return application


async def start(metrics: Metrics, observations: Observations, port: int) -> web.AppRunner:
    runner = web.AppRunner(app(metrics, observations), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # a pod serves on all its addresses
    return runner
