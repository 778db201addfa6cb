import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from portal.roles import Area, has_perm
from profiles.models import ComputeProfile, Infrastructure
from workspaces.demo import DEMO_ADMIN, DEMO_SCIENTIST, load_demo

pytestmark = pytest.mark.django_db


def test_demo_data_has_the_briefs_profiles_and_two_logins():
    load_demo()
    assert Infrastructure.objects.get(kind="local").name == "This machine"
    aws = Infrastructure.objects.get(name="AWS us-east-1")
    assert not aws.usability()[0]
    desired = dict(ComputeProfile.objects.values_list("name", "desired_capacity"))
    assert (desired["Small"], desired["Medium"], desired["Large"]) == (9, 2, 1)
    assert ComputeProfile.objects.get(name="Medium (heterogeneous)").is_heterogeneous
    starter = ComputeProfile.objects.get(name="Starter")
    assert starter.totals()["gpus"] == 0
    admin = authenticate(username=DEMO_ADMIN[0], password=DEMO_ADMIN[1])
    scientist = authenticate(username=DEMO_SCIENTIST[0], password=DEMO_SCIENTIST[1])
    assert has_perm(admin, Area.INFRASTRUCTURE, "change")
    assert has_perm(scientist, Area.SELF_SERVICE, "use")
    assert not has_perm(scientist, Area.INFRASTRUCTURE, "view")


def test_loading_the_demo_twice_changes_nothing(capsys):
    call_command("load_demo")
    counts = (Infrastructure.objects.count(), ComputeProfile.objects.count())
    call_command("load_demo")
    assert (Infrastructure.objects.count(), ComputeProfile.objects.count()) == counts
    assert "admin / gpu-paas-admin" in capsys.readouterr().out


def test_the_demo_restores_missing_turnkey_profiles():
    from profiles.models import ServicesProfile

    ServicesProfile.objects.filter(turnkey=True).delete()
    load_demo()
    assert ServicesProfile.objects.filter(turnkey=True).count() == 6


def test_the_demo_takes_an_account_whose_name_differs_only_in_case_as_its_own():
    """Usernames are unique ignoring case (portal 0009): an "ADMIN" made by hand is the
    demo's admin, not a clash that stops the demo loading."""
    User = get_user_model()
    made = User.objects.create_user("ADMIN", password="chosen-by-the-operator")
    load_demo()
    assert User.objects.filter(username__iexact=DEMO_ADMIN[0]).get() == made
