"""Fan-out publisher process: ``python -m bench.publisher STACK FOLDER COUNT``.

Publishes ``COUNT`` file events to ``FOLDER`` through the channel layer (the bench's Redis),
back to back, and prints one JSON object: ``{file_id: publish time}``. The plain stacks get
a raw ``group_send`` of the same payload; secure_ws goes through
:func:`secure_ws.contrib.files.events.apublish_file_event` (sequence number, validation,
drop monitor), as a view or a Celery task would.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

import django

django.setup()

from channels.layers import get_channel_layer  # noqa: E402

from bench.apps import PLAIN_GROUP_PREFIX  # noqa: E402
from secure_ws.contrib.files.events import apublish_file_event  # noqa: E402
from secure_ws.contrib.files.schemas import FileUploaded  # noqa: E402

SHA256 = "0" * 64


async def publish(stack: str, folder: str, count: int, interval: float) -> dict[str, float]:
    """Publish ``count`` events; return each event's file id and publish time."""
    sent: dict[str, float] = {}
    layer = get_channel_layer()
    for index in range(1, count + 1):
        file_id = str(uuid.UUID(int=index))
        name = f"bench-{index}.txt"
        sent[file_id] = time.time()
        if stack == "secure":
            event = FileUploaded(
                file_id=uuid.UUID(int=index),  # type: ignore[arg-type]
                name=name,
                size=1024,
                content_type="text/plain",
                sha256=SHA256,
            )
            await apublish_file_event(folder, event)
        else:
            payload = {
                "folder": folder,
                "seq": index,
                "timestamp": time.time(),
                "file_id": file_id,
                "name": name,
                "size": 1024,
                "content_type": "text/plain",
                "sha256": SHA256,
            }
            await layer.group_send(  # type: ignore[union-attr]
                PLAIN_GROUP_PREFIX + folder, {"type": "file.uploaded", "payload": payload}
            )
        if interval:
            await asyncio.sleep(interval)
    return sent


def main() -> None:
    stack, folder, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    print(json.dumps(asyncio.run(publish(stack, folder, count, interval))), flush=True)


if __name__ == "__main__":
    main()
