"""HTTP triggers (blueprint): each one turns the host's HttpRequest into a plain shared.api.Request,
makes one call into shared/api.py and turns its Response into an HttpResponse. Routes and methods
are declared here (the local front, localdev/serve.py, routes by them); docs/openapi.yaml
describes the API. Who may call which route: shared/api.py `authorize`, docs/operations.md.

Adding an endpoint: docs/architecture.md "HTTP endpoints".
"""

from __future__ import annotations

import azure.functions as func

from shared import api
from triggers import settings

bp = func.Blueprint()


def request_of(req: func.HttpRequest) -> api.Request:
    return api.Request(
        method=req.method,
        url=req.url,
        headers=dict(req.headers),
        params=dict(req.params),
        route_params=dict(req.route_params),
        body=req.get_body(),
    )


def response_of(answer: api.Response) -> func.HttpResponse:
    return func.HttpResponse(
        answer.body,
        status_code=answer.status,
        mimetype=answer.mimetype,
        charset=answer.charset,
        headers=dict(answer.headers),
    )


async def serve(handler: api.Endpoint, req: func.HttpRequest) -> func.HttpResponse:
    return response_of(await handler(request_of(req), settings))


@bp.route(route="runs", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def start_run(req: func.HttpRequest) -> func.HttpResponse:
    return await serve(api.start_run, req)


@bp.route(route="runs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    return await serve(api.list_runs, req)


@bp.route(route="runs/{runId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def get_run(req: func.HttpRequest) -> func.HttpResponse:
    return await serve(api.get_run, req)


@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def get_status(req: func.HttpRequest) -> func.HttpResponse:
    return await serve(api.get_status, req)


@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    return await serve(api.get_dashboard, req)


@bp.route(route="waiting", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def list_waiting(req: func.HttpRequest) -> func.HttpResponse:
    return await serve(api.get_waiting, req)


@bp.route(route="tenants", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def list_tenants(req: func.HttpRequest) -> func.HttpResponse:
    return await serve(api.list_tenants, req)
