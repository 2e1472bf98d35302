"""A local HTTP server in a thread, shared by the fake outside parties (ad platforms, carriers)."""

from __future__ import annotations

import threading

from werkzeug.serving import make_server


class ThreadedServer:
    """A threaded werkzeug server on a free 127.0.0.1 port, serving ``self._wsgi``.

    Use it with ``with`` or ``start()`` / ``stop()``; ``base`` is its URL.
    """

    _server = None
    _thread = None

    def start(self):
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        # A short poll interval, so that stop() returns at once.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def _wsgi(self, environ, start_response):  # pragma: no cover - subclasses
        raise NotImplementedError
