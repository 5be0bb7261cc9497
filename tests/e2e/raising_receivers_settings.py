"""Test settings whose project connects receivers that raise to every connection signal.

One synchronous and one ``async def`` receiver per signal, each raising: none of them may
change whether a connection is refused, accepted or kept open.
"""

from typing import Any

from secure_ws import signals
from tests.settings import *  # noqa: F403


def sync_receiver_that_raises(**kwargs: Any) -> None:
    raise RuntimeError("sync receiver bug")


async def async_receiver_that_raises(**kwargs: Any) -> None:
    raise RuntimeError("async receiver bug")


for _signal in (
    signals.connection_refused,
    signals.connection_accepted,
    signals.connection_closed,
    signals.security_event,
):
    _signal.connect(sync_receiver_that_raises, weak=False)
    _signal.connect(async_receiver_that_raises, weak=False)
