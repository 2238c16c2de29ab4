"""A local stand-in for the Functions host's HTTP front and queue listener (development only).

The Functions host cannot run here, so `make serve` and the tests put this in front of the app:

- HTTP on a loopback port, standard library `ThreadingHTTPServer`. Routes come from the app's own
  HTTP trigger metadata (`route`, `methods`) under `/api`; an unknown route is 404, a known route
  with another method 405 with `Allow`. Each request becomes a real `azure.functions.HttpRequest`,
  the function's `HttpResponse` goes back as it is. Auth level FUNCTION is checked as the host
  does: the key in `x-functions-key` or `?code=`, otherwise 401.
- The queue trigger's messages are read from the trigger's own queue (its `%SETTING%` name and
  `connection` resolved from the environment, Azurite locally) and handed to the function as a
  real `azure.functions.QueueMessage` with its dequeue count; a failed delivery becomes visible
  again after host.json's `visibilityTimeout`, and after `maxDequeueCount` deliveries the message
  moves to `<queue>-poison`, as the host does.
- Every invocation runs on one event loop in its own thread, as the Python worker runs async
  functions.

Deployments use the real host; this never listens anywhere but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from localdev.services import LOOPBACK, ROOT

log = logging.getLogger("licensing.front")
ROUTE_PREFIX = "/api"
KEY_HEADER = "x-functions-key"
KEY_PARAM = "code"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class HttpRoute:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    anonymous: bool
    function: Callable[[func.HttpRequest], Coroutine[Any, Any, func.HttpResponse]]


@dataclass(frozen=True)
class QueueListener:
    name: str
    queue_name: str
    connection: str
    function: Callable[[QueueMessage], Coroutine[Any, Any, None]]


def _route_pattern(route: str) -> re.Pattern[str]:
    """A host route template (`runs/{runId}`, `{name:int}`, `{rest*}`) as a regex."""
    out, pos = "", 0
    for m in re.finditer(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?(\*?)\}", route):
        out += re.escape(route[pos : m.start()])
        catch_all = bool(m.group(1) or m.group(3))
        out += f"(?P<{m.group(2)}>{'.*' if catch_all else '[^/]+'})"
        pos = m.end()
    out += re.escape(route[pos:])
    return re.compile(f"^{re.escape(ROUTE_PREFIX)}/{out}/?$")


def _setting(value: str, env: Mapping[str, str]) -> str:
    """A binding value with %SETTING% resolved from the app settings, as the host does."""
    return re.sub(r"%([^%]+)%", lambda m: env.get(m.group(1), ""), value)


_INDEXED: dict[int, tuple[func.FunctionApp, list[Any]]] = {}


def indexed_functions(app: func.FunctionApp) -> list[Any]:
    """app.get_functions(), once per app object (a second call refuses every name as a duplicate;
    the host, too, indexes an app once)."""
    if id(app) not in _INDEXED:
        _INDEXED[id(app)] = (app, app.get_functions())
    return _INDEXED[id(app)][1]


def functions_of(app: func.FunctionApp) -> tuple[list[HttpRoute], list[QueueListener]]:
    routes: list[HttpRoute] = []
    listeners: list[QueueListener] = []
    env = os.environ
    for fn in indexed_functions(app):
        trigger: Any = fn.get_trigger()  # the decorators' binding objects carry their settings
        name = str(fn.get_function_name())
        if trigger.get_binding_name() == "httpTrigger":
            methods = getattr(trigger, "methods", None) or METHODS
            level = getattr(trigger, "auth_level", None)
            routes.append(
                HttpRoute(
                    name,
                    _route_pattern(getattr(trigger, "route", None) or name),
                    frozenset(str(getattr(m, "value", m)).upper() for m in methods),
                    level == func.AuthLevel.ANONYMOUS,
                    fn.get_user_function(),
                )
            )
        elif trigger.get_binding_name() == "queueTrigger":
            listeners.append(
                QueueListener(
                    name,
                    _setting(trigger.queue_name, env),
                    trigger.connection or "AzureWebJobsStorage",
                    fn.get_user_function(),
                )
            )
    return routes, listeners


def host_queue_settings(host_json: Path = ROOT / "host.json") -> tuple[int, timedelta]:
    """maxDequeueCount and visibilityTimeout from host.json (the host's defaults: 5, 0 s)."""
    queues = json.loads(host_json.read_text()).get("extensions", {}).get("queues", {})
    raw = str(queues.get("visibilityTimeout", "00:00:00"))
    hours, minutes, seconds = (int(part) for part in raw.split(":"))
    visibility = timedelta(hours=hours, minutes=minutes, seconds=seconds)
    return int(queues.get("maxDequeueCount", 5)), visibility


def _json_error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return status, {"Content-Type": "application/json"}, body


@dataclass
class Front:
    """The app behind a loopback HTTP server and a queue listener. start(), then stop()."""

    app: func.FunctionApp
    key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = 0
    listen_queues: bool = True
    poll_interval_s: float = 0.5
    routes: list[HttpRoute] = field(default_factory=list, init=False)
    listeners: list[QueueListener] = field(default_factory=list, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{ROUTE_PREFIX}"

    def start(self) -> Front:
        self.routes, self.listeners = functions_of(self.app)
        self._loop = asyncio.new_event_loop()
        self._spawn("invocations", self._loop.run_forever)
        self._server = ThreadingHTTPServer((LOOPBACK, self.port), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._spawn("http", self._server.serve_forever)
        if self.listen_queues:
            for listener in self.listeners:
                listen = functools.partial(self._listen, listener)
                self._spawn(f"queue {listener.queue_name}", listen)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            thread.join(timeout=30)

    def _spawn(self, name: str, target: Callable[[], Any]) -> None:
        thread = threading.Thread(target=target, name=f"front {name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def invoke(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None, "start() first"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # -- HTTP ---------------------------------------------------------------------------------

    def answer(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, host: str
    ) -> tuple[int, dict[str, str], bytes]:
        """One request: (status, headers, body)."""
        parts = urlsplit(target)
        path = unquote(parts.path)
        matching = [(r, m) for r in self.routes if (m := r.pattern.match(path))]
        if not matching:
            return _json_error(404, "NotFound", f"no function serves {path}")
        found = next(((r, m) for r, m in matching if method in r.methods), None)
        if found is None:
            allowed = sorted({verb for r, _ in matching for verb in r.methods})
            status, out, text = _json_error(
                405, "MethodNotAllowed", f"{path} takes {', '.join(allowed)}, not {method}"
            )
            return status, {**out, "Allow": ", ".join(allowed)}, text
        route, match = found
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        lowered = {k.lower(): v for k, v in headers.items()}
        if not route.anonymous and self.key not in (
            lowered.get(KEY_HEADER),
            params.get(KEY_PARAM),
        ):
            return _json_error(
                401,
                "Unauthorized",
                f"send the function key in the {KEY_HEADER} header or the ?{KEY_PARAM}= parameter",
            )
        request = func.HttpRequest(
            method,
            f"http://{host}{target}",
            headers=dict(headers),
            params=params,
            route_params=match.groupdict(),
            body=body,
        )
        try:
            response: func.HttpResponse = self.invoke(route.function(request))
        except Exception:  # the host answers an empty 500 here; the app's guard should prevent it
            log.exception("function %s raised", route.name)
            return 500, {}, b""
        out = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
        if response.mimetype:
            charset = f"; charset={response.charset}" if response.charset else ""
            out["Content-Type"] = f"{response.mimetype}{charset}"
        return response.status_code, out, response.get_body()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                host = self.headers.get("Host") or f"{LOOPBACK}:{front.port}"
                status, headers, data = front.answer(
                    self.command, self.path, dict(self.headers.items()), body, host
                )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def __getattr__(self, name: str) -> Any:
                # Every method reaches the router (do_QUERY, do_TRACE, ...), which answers 405
                # for one the route does not declare, as the host does, not http.server's 501.
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

            def log_message(self, format: str, *args: object) -> None:
                log.info("%s %s", self.address_string(), format % args)

        return Handler

    # -- queue --------------------------------------------------------------------------------

    def _client(self, listener: QueueListener, queue_name: str) -> QueueClient:
        conn = os.environ.get(listener.connection, "")
        if not conn:
            raise RuntimeError(f"{listener.connection} is not set: the queue trigger needs it")
        client = QueueClient.from_connection_string(
            conn,
            queue_name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )
        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        return client

    def _listen(self, listener: QueueListener) -> None:
        max_dequeue, visibility = host_queue_settings()
        queue = self._client(listener, listener.queue_name)
        poison = self._client(listener, f"{listener.queue_name}-poison")
        while not self._stopping.is_set():
            try:
                messages = list(queue.receive_messages(max_messages=1, visibility_timeout=600))
            except Exception as exc:  # storage stopped (shutdown) or unreachable: try again
                log.warning("queue %s: %s", listener.queue_name, exc)
                messages = []
            if not messages:
                self._stopping.wait(self.poll_interval_s)
                continue
            for message in messages:
                self.deliver(listener, queue, poison, message, max_dequeue, visibility)

    def deliver(
        self,
        listener: QueueListener,
        queue: QueueClient,
        poison: QueueClient,
        message: Any,
        max_dequeue: int,
        visibility: timedelta,
    ) -> None:
        delivered = QueueMessage(
            id=message.id,
            body=str(message.content).encode(),
            dequeue_count=message.dequeue_count,
            pop_receipt=message.pop_receipt,
        )
        try:
            self.invoke(listener.function(delivered))
        except Exception:
            log.exception(
                "%s failed on delivery %d of %d", listener.name, message.dequeue_count, max_dequeue
            )
            if message.dequeue_count >= max_dequeue:
                poison.send_message(message.content)
                queue.delete_message(message)
            else:  # visible again after the host's visibilityTimeout
                queue.update_message(message, visibility_timeout=int(visibility.total_seconds()))
            return
        queue.delete_message(message)
