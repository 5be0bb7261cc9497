"""Create the demo users and the ``team`` folder. Running it twice changes nothing."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from project.filebox.models import Folder, Membership

#: username -> access to folder ``team`` (None: no membership).
DEMO_USERS: dict[str, str | None] = {
    "alice": Membership.WRITE,
    "bob": Membership.WRITE,
    "carol": Membership.READ,
    "mallory": None,
}


class Command(BaseCommand):
    help = "Create demo users alice, bob, carol, mallory and superuser admin, and folder team."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", required=True, help="Password for every demo user.")

    @transaction.atomic
    def handle(self, *args: Any, password: str, **options: Any) -> None:
        user_model = get_user_model()
        folder, _ = Folder.objects.get_or_create(slug="team", defaults={"name": "Team"})
        created = []
        for username, access in DEMO_USERS.items():
            user, was_created = user_model.objects.get_or_create(username=username)
            if was_created:
                user.set_password(password)
                user.save()
                created.append(username)
            if access is not None:
                Membership.objects.get_or_create(
                    folder=folder, user=user, defaults={"access": access}
                )
        admin, was_created = user_model.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        if was_created:
            admin.set_password(password)
            admin.save()
            created.append("admin")
        message = f"created {', '.join(created)}" if created else "nothing to do"
        self.stdout.write(f"demo_seed: {message}")
