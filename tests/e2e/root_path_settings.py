"""Test settings for a deployment served under ``/app``: ``ROOT_PATH = "/app"``."""

from tests.settings import *  # noqa: F403
from tests.settings import SECURE_WS

SECURE_WS = {**SECURE_WS, "ROOT_PATH": "/app"}
