from django.db import migrations
from django.db.models import Count
from django.db.models.functions import Upper

# Usernames must differ by more than case: logins (the break-glass one among them) look
# them up case-insensitively. The forms check it, but two requests at the same moment both
# pass the check; this index makes the database refuse the second one. UPPER is what
# Django's `iexact` compares on both PostgreSQL and SQLite (whose LIKE, like its UPPER,
# folds ASCII only), so the index and the forms' check agree on which names are twins.
# The auth app's model cannot name this index, so it lives here alone.
INDEX = "auth_user_username_upper_uniq"


class CaseTwins(RuntimeError):
    """Accounts whose usernames differ only in case exist: the index cannot be made."""


def case_twins(users) -> list[list[str]]:
    """Sets of usernames (with their ids) that are equal ignoring case, for the message."""
    folded = (
        users.annotate(folded=Upper("username"))
        .values("folded")
        .annotate(count=Count("pk"))
        .filter(count__gt=1)
        .values_list("folded", flat=True)
    )
    twins = users.annotate(folded=Upper("username")).filter(folded__in=list(folded))
    sets: dict[str, list[str]] = {}
    for user in twins.order_by("folded", "pk"):
        sets.setdefault(user.folded, []).append(f"“{user.username}” (id {user.pk})")
    return list(sets.values())


def add_index(apps, schema_editor):
    users = apps.get_model("auth", "User").objects.using(schema_editor.connection.alias)
    if twins := case_twins(users):
        listed = "; ".join(", ".join(names) for names in twins)
        raise CaseTwins(
            "Cannot make usernames unique ignoring case: these accounts differ only in "
            f"case: {listed}. Rename all but one of each set (e.g. `manage.py shell -c "
            '"from django.contrib.auth.models import User; '
            "User.objects.filter(pk=ID).update(username='NEW NAME')\"`), then migrate again."
        )
    schema_editor.execute(f"CREATE UNIQUE INDEX {INDEX} ON auth_user (UPPER(username))")


def remove_index(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX {INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("portal", "0008_bound_group_hours"),
    ]

    operations = [migrations.RunPython(add_index, remove_index)]
