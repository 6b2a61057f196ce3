"""Request body limits, enforced while the body streams in (a lying or missing Content-Length cannot dodge them)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.problems import problem


class BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI's body parsing passes it on instead of turning it into a 400."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(413, f"the request body exceeds {limit} bytes ({setting})")
        self.limit = limit


class BodyLimitMiddleware:
    """413 problem+json for bodies over the limit: `upload_limit` for multipart uploads, `json_limit` otherwise."""

    MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and the other fields around the file

    def __init__(self, app: ASGIApp, *, json_limit: int, upload_limit: int) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit + self.MULTIPART_OVERHEAD

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/")
        limit = self.upload_limit if multipart else self.json_limit
        setting = "GENSERVE_MAX_UPLOAD_BYTES" if multipart else "GENSERVE_MAX_REQUEST_BYTES"
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(scope, receive, send, limit, setting)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(scope, receive, send, limit, setting)

    @staticmethod
    async def _reject(scope: Scope, receive: Receive, send: Send, limit: int, setting: str) -> None:
        response = problem(
            413,
            "Request body too large",
            f"the request body exceeds {limit} bytes ({setting})",
            errors=[{"loc": ["body"], "msg": f"larger than {limit} bytes"}],
            extra={"limit": limit},
        )
        await response(scope, receive, send)
