"""A visitor's mistake, said in one line: `user_errors` wraps every handler and API endpoint, so a
`UserInputError` (or the library's `LabError` or `HeadsError`, its words for the same) becomes the status
line and a warning toast in the page, or the one-line error an API client receives. Nothing went
wrong in the server, so no traceback is printed or shown."""

import functools
import inspect
import logging

import gradio as gr

from ..heads import HeadsError
from ..lab import LabError
from .inputs import UserInputError
from .widgets import w

USER_ERRORS = (UserInputError, LabError, HeadsError)
log = logging.getLogger(__name__)


def warn(exc: Exception | str) -> str:
    """A user error as a status line, also shown as a toast."""
    gr.Warning(str(exc))
    return f"⚠ {exc}"


def api_error(exc: Exception) -> gr.Error:
    """A caller's mistake as the one-line error the client receives, logged as one line."""
    log.warning("API request refused: %s", exc)
    return gr.Error(str(exc), print_exception=False)


def user_errors(status: str | None = None):
    """Decorator: the handler's user errors go to the component `w.<status>` (a status line) with a
    toast; with no `status` (an API endpoint) they go back to the client as a one-line error. Works
    for plain handlers and for generators (which then yield the status as their last update)."""

    def refused(exc: Exception):
        if status is None:
            raise api_error(exc) from None
        return {getattr(w, status): warn(exc)}

    def wrap(fn):
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def stream(*args, **kwargs):
                try:
                    yield from fn(*args, **kwargs)
                except USER_ERRORS as exc:
                    yield refused(exc)

            return stream

        @functools.wraps(fn)
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except USER_ERRORS as exc:
                return refused(exc)

        return call

    return wrap
