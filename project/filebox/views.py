"""The demo page: log in, see your folders, upload and delete files, watch events live."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """Render the single-page demo; everything else happens in ``filebox/demo.js``.

    The page holds no data of its own: the script logs in against ``/api/token/``, reads
    ``/api/folders/`` and connects to ``/ws/files/`` with the access token as a subprotocol
    entry, so the page can be cached and served before login.
    """
    return render(request, "filebox/index.html", {"ws_path": "/ws/files/"})
