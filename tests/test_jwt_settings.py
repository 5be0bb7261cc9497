"""simplejwt's settings are read at use time, so ``SIMPLE_JWT`` changes reach every module.

simplejwt rebinds its ``api_settings`` when ``SIMPLE_JWT`` changes; a module that kept a
module-level alias would go on reading the old lifetimes and claim names.
"""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

import secure_ws
from secure_ws.sessions.models import RevokedSession
from secure_ws.sessions.revocation import revoke_session

PACKAGE = Path(secure_ws.__file__).parent


@pytest.mark.django_db
def test_revocation_mark_follows_an_overridden_refresh_lifetime() -> None:
    lifetimes = {
        "REFRESH_TOKEN_LIFETIME": timedelta(days=3),
        "ACCESS_TOKEN_LIFETIME": timedelta(minutes=5),
    }
    before = timezone.now()
    with override_settings(SIMPLE_JWT={**settings.SIMPLE_JWT, **lifetimes}):
        revoke_session("sid-override-test")
    expires_at = RevokedSession.objects.get(session_id="sid-override-test").expires_at
    expected = before + timedelta(days=3, minutes=5)
    assert expected - timedelta(seconds=5) <= expires_at <= expected + timedelta(minutes=1)


def test_no_module_keeps_a_module_level_alias_of_simplejwt_settings() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:  # module level only: imports inside functions are fresh
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "rest_framework_simplejwt.settings"
            ):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []
