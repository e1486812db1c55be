"""WhiteNoise's static files without a thread for every other request.

WhiteNoise's middleware is synchronous only, so Django ran every HTTP request of a server process
(each ``/metrics`` scrape, each admin page) through a thread to pass it, and that thread's Python
then took turns for the GIL with the event loop serving the sockets. This one is asynchronous:
it looks a path up in WhiteNoise's table (a dict) on the loop, and only a static file itself is
served from a thread.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        markcoroutinefunction(self)

    async def __call__(self, request: Any) -> Any:  # type: ignore[override]
        path = request.path_info
        static_file = await sync_to_async(self.find_file)(path) if self.autorefresh else self.files.get(path)
        if static_file is None:
            return await self.get_response(request)
        return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
