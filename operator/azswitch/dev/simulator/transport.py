"""The simulator as an ``httpx`` transport, for fast in-process tests of the real client.

A client built with ``httpx.AsyncClient(transport=SimulatorTransport(sim), base_url=...)`` goes through the same
``Simulator.handle`` as a request over the aiohttp server: same routing, signatures, faults and log. A dropped
connection becomes ``httpx.RemoteProtocolError``, which is what httpx raises when a real server closes the
connection without answering. This is the only module of the simulator that imports httpx.
"""

from __future__ import annotations

import httpx

from azswitch.dev.simulator.wire import RequestHandler


class SimulatorTransport(httpx.AsyncBaseTransport):
    def __init__(self, simulator: RequestHandler) -> None:
        self.simulator = simulator

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await _body(request)
        raw_path, _, raw_query = request.url.raw_path.partition(b"?")
        response = await self.simulator.handle(
            request.method,
            raw_path.decode("ascii"),
            raw_query.decode("ascii"),
            dict(request.headers.items()),
            body,
        )
        if response.drop:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(
            response.status, headers=response.headers, content=response.body, request=request
        )


async def _body(request: httpx.Request) -> bytes:
    # Read the stream, not ``request.content``: the stream is what a real transport puts on the wire, and an
    # auth flow may have replaced it after the content was first read.
    stream = request.stream
    if isinstance(stream, httpx.AsyncByteStream):
        return b"".join([chunk async for chunk in stream])
    return await request.aread()
