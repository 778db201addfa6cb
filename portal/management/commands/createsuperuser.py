"""Django's `createsuperuser`, refusing a username or an address another account holds in
any case (portal 0009 and 0010: the database refuses them) with a message, not a traceback.

Django checks the username with `get_by_natural_key`, an exact match, so "OLGA" beside
"olga" passed its check and the database's unique index then crashed the command; it does
not check the address at all.
"""

import os

from django.contrib.auth.management.commands import createsuperuser
from django.core.management.base import CommandError
from django.db import IntegrityError

from portal import users as user_actions


class Command(createsuperuser.Command):
    def handle(self, *args, **options):
        self.database = options["database"]  # for `get_input_data`, which is not told it
        email = self._given_email(options)
        if email and self._email_taken(email, self.database):
            raise CommandError(user_actions.EmailTaken().message)
        try:
            return super().handle(*args, **options)
        except IntegrityError:
            raise CommandError(
                "Another account took this username or email address (ignoring case) while "
                "the command ran. Run it again to choose another."
            ) from None

    def _validate_username(self, username, verbose_field_name, database):
        """Django's check, and then the database's rule: taken ignoring case. An error
        message, or None when the name is free."""
        if error := super()._validate_username(username, verbose_field_name, database):
            return error
        normalized = self.UserModel.normalize_username(username)
        users = self.UserModel._default_manager.db_manager(database)
        if users.filter(username__iexact=normalized).exists():
            return f"Error: That {verbose_field_name} is already taken (ignoring case)."
        return None

    def get_input_data(self, field, message, default=None):
        """As Django asks; an address another account holds is refused and asked again."""
        value = super().get_input_data(field, message, default)
        if field.name == "email" and value and self._email_taken(value, self.database):
            self.stderr.write(f"Error: {user_actions.EmailTaken().message}")
            return None
        return value

    def _given_email(self, options) -> str:
        """The address given with --email, or by DJANGO_SUPERUSER_EMAIL with --noinput, where
        Django reads them (it asks for one only when neither is given)."""
        if options.get("email"):
            return options["email"]
        if options["interactive"]:
            return ""
        return os.environ.get("DJANGO_SUPERUSER_EMAIL", "")

    def _email_taken(self, email: str, database: str) -> bool:
        users = self.UserModel._default_manager.db_manager(database)
        return users.filter(email__iexact=email.strip()).exists()
