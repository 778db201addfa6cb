from django.db import migrations
from django.db.models import Count
from django.db.models.functions import Upper

# An email address names one account at most: SSO matching (`authenticate_by_email`) needs
# exactly one owner, and a login by email would try the password on every holder. The forms
# check it, but two requests at the same moment both pass the check; this index makes the
# database refuse the second one. UPPER, as in 0009: it is what Django's `iexact` (the forms'
# check) compares on PostgreSQL and SQLite. Accounts without an address (email '') are many.
# Migrations stay as written, so this one repeats 0009's recipe rather than importing it.
INDEX = "auth_user_email_upper_uniq"


class SharedAddresses(RuntimeError):
    """Accounts whose addresses are equal ignoring case exist: the index cannot be made."""


def shared_addresses(users) -> list[str]:
    """Per address held by several accounts, who holds it (usernames and ids), for the
    message."""
    addressed = users.exclude(email="").annotate(folded=Upper("email"))
    shared = (
        addressed.values("folded")
        .annotate(count=Count("pk"))
        .filter(count__gt=1)
        .values_list("folded", flat=True)
    )
    holders: dict[str, list[str]] = {}
    for user in addressed.filter(folded__in=list(shared)).order_by("folded", "pk"):
        holders.setdefault(user.folded, []).append(
            f"“{user.username}” (id {user.pk}, “{user.email}”)"
        )
    return [", ".join(names) for names in holders.values()]


def add_index(apps, schema_editor):
    users = apps.get_model("auth", "User").objects.using(schema_editor.connection.alias)
    if shared := shared_addresses(users):
        raise SharedAddresses(
            "Cannot make email addresses unique ignoring case: these accounts share one: "
            f"{'; '.join(shared)}. Give all but one of each set another address, or none "
            '(e.g. `manage.py shell -c "from django.contrib.auth.models import User; '
            "User.objects.filter(pk=ID).update(email='')\"`), then migrate again."
        )
    schema_editor.execute(
        f"CREATE UNIQUE INDEX {INDEX} ON auth_user (UPPER(email)) WHERE email <> ''"
    )


def remove_index(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("portal", "0009_username_unique_ignoring_case")]

    operations = [migrations.RunPython(add_index, remove_index)]
