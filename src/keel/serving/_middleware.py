"""ASGI middleware of the server: request ids, the body cap, a family's fast route."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from keel.serving._http import error_response, new_request_id


class FastRoute:
    """ASGI middleware: ``POST path`` answered without the router when it can be.

    FastAPI's routing, dependency solving and exception middleware cost about as much
    as a one-row prediction. A well-formed request to ``path`` is answered here by
    ``answer(raw body, request)`` — the same code the route uses; when it returns
    ``None`` (keys to check, a body that does not parse), or for any other route, the
    request goes to the app unchanged, the body replayed. A family mounts it through
    ``create_family_app(middleware=...)`` (the tabular ``/predict``).
    """

    def __init__(self, app: Any, path: str, answer: Any) -> None:
        self.app, self.path, self.answer = app, path, answer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # disconnected, or the body cap hit
                await self.app(scope, _replay([], message), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        response = self.answer(raw, Request(scope, receive))
        if response is None:
            await self.app(scope, _replay([raw], None), send)
            return
        await response(scope, receive, send)


def _replay(chunks: list[bytes], last: Any) -> Any:
    """An ASGI ``receive`` that gives back a body already read (or a final message)."""
    pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
    if last is not None:
        pending = [last]

    async def receive() -> Any:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    return receive


class _RequestContext:
    """ASGI middleware: a request id on every request and answer, and a body-size cap.

    The cap is checked on ``Content-Length`` before anything is read and, for
    chunked bodies, while the body is read.
    """

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        length = dict(scope.get("headers", ())).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await error_response(400, "invalid Content-Length header", request_id)(
                    scope, receive, send
                )
                return
            if int(length) > self.max_body_bytes:
                await self._too_large(int(length), request_id, scope, receive, send)
                return

        # A body without Content-Length (chunked) is counted as it arrives; past the
        # cap, the 413 is sent at once and whatever the app answers later is dropped.
        received = 0
        answered = False

        async def counted_receive() -> Any:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes and not answered:
                    await self._too_large(received, request_id, scope, receive, send)
                    answered = True
                    return {"type": "http.disconnect"}
            return message

        async def send_with_id(message: Any) -> None:
            if answered:
                return
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        await self.app(scope, counted_receive, send_with_id)

    async def _too_large(
        self, size: int, request_id: str, scope: Any, receive: Any, send: Any
    ) -> None:
        await error_response(
            413,
            f"request body of {size} bytes (or more) is over the limit of"
            f" {self.max_body_bytes}; send fewer instances per request",
            request_id,
        )(scope, receive, send)
