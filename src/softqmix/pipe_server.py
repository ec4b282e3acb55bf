"""The request loop of a child process that serves its parent over a pipe (env workers, collection)."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any


def serve(conn: Connection, handlers: Mapping[str, Callable[[Any], Any]], on_exit: Callable[[], None]) -> None:
    """Answer each (command, payload) with ("ok", handlers[command](payload)) until "close".

    An exception in a handler is sent back as ("error", traceback) and the loop goes on, so the
    parent reports the child's own error; a parent that vanishes (EOF) ends the loop. `on_exit`
    runs however the loop ends (it closes what the child owns, e.g. a StarCraft II process); on
    "close" it runs before the answer, so a parent that has the answer knows it is done.
    """
    exited = False
    try:
        while True:
            command, payload = conn.recv()
            if command == "close":
                exited = True
                on_exit()
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", handlers[command](payload)))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        if not exited:
            on_exit()
