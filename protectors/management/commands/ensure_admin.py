"""Create (or reset the password of) a superuser for a local demo, printing the credentials."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Ensure a superuser exists; with --reset-password give it a new random password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", help="Use this password instead of a random one.")
        parser.add_argument("--reset-password", action="store_true")

    def handle(self, *args, username: str, password: str | None, reset_password: bool, **_):
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        if created or reset_password or password:
            password = password or secrets.token_urlsafe(12)
            user.set_password(password)
            user.save()
            self.stdout.write(f"user: {username}\npassword: {password}")
        else:
            self.stdout.write(f"user: {username} (exists; password unchanged)")
