"""The warm-pools pages: what they show, pause/resume, schedules and their validation."""

from datetime import time, timedelta
from http import HTTPStatus

import pytest
from django.urls import reverse
from django.utils import timezone

from pools import warmpool
from pools.lifecycle import State
from pools.models import LoopDecision, Pool, PoolSchedule
from portal.models import AuditEntry
from tests.pools.warm_fixtures import make_instances
from workspaces import actions


@pytest.fixture
def weekend(warm_profile):
    return PoolSchedule.objects.create(
        profile=warm_profile, name="Weekend", weekdays=[5, 6], desired_capacity=2
    )


def test_the_pools_page_shows_counts_and_the_effective_desired_value_with_its_reason(
    admin_client, warm_profile, settings, monkeypatch
):
    make_instances(warm_profile, 3)
    make_instances(warm_profile, 2, state=State.PROVISIONING)
    PoolSchedule.objects.create(
        profile=warm_profile, name="Always", weekdays=list(range(7)), desired_capacity=2
    )
    response = admin_client.get(reverse("pools:pool_list"))
    assert response.status_code == HTTPStatus.OK
    html = response.content.decode()
    assert "Every day 00:00–00:00 schedule “Always”: 2 instead of 9" in html
    assert '<td class="ready">3</td>' in html
    assert '<td class="provisioning">2</td>' in html


def test_the_detail_page_shows_metrics_the_chart_and_the_decision_log(
    admin_client, warm_profile, member
):
    make_instances(warm_profile, 1)
    actions.request_workspace(member, warm_profile, "hit")  # a warm hit
    actions.request_workspace(member, warm_profile, "miss")  # none left: on demand
    now = timezone.now()
    warmpool.reconcile([warm_profile.pk], now - timedelta(hours=2))
    warmpool.reconcile([warm_profile.pk], now - timedelta(hours=1))
    response = admin_client.get(reverse("pools:pool_detail", args=[warm_profile.pk]))
    html = response.content.decode()
    assert response.status_code == HTTPStatus.OK
    assert '50% <span class="muted">(1 of 2 requests)</span>' in html
    assert '<path class="desired"' in html and '<path class="ready"' in html
    assert html.count("desired capacity 9; ") >= 2  # the decision log
    assert "pool-" in html  # the recent claim


def test_pause_and_resume_are_audited_and_resume_clears_a_halt(admin_client, warm_profile):
    url = reverse("pools:pool_pause", args=[warm_profile.pk])
    assert admin_client.post(url).status_code == HTTPStatus.FOUND
    assert Pool.objects.get(profile=warm_profile).paused
    for _ in range(warmpool.HARD_LIMIT):
        warmpool.record_failure(warm_profile.pk, "quota exceeded at the provider")
    page = admin_client.get(reverse("pools:pool_list")).content.decode()
    assert 'data-alert="halted"' in page and "quota exceeded at the provider" in page
    admin_client.post(reverse("pools:pool_resume", args=[warm_profile.pk]))
    pool = Pool.objects.get(profile=warm_profile)
    assert not pool.paused and not pool.halted and pool.consecutive_failures == 0
    messages = list(AuditEntry.objects.values_list("message", flat=True))
    assert "paused the warm pool" in messages
    assert "resumed the warm pool (was halted)" in messages


def test_pause_and_resume_record_the_pools_state_before_and_after(org_admin, warm_profile):
    warmpool.pause(org_admin, warm_profile)
    for _ in range(warmpool.HARD_LIMIT):
        warmpool.record_failure(warm_profile.pk, "quota exceeded at the provider")
    warmpool.resume(org_admin, warm_profile)

    paused, resumed = AuditEntry.objects.filter(actor=org_admin).order_by("pk")
    assert paused.before == {"paused": False, "halted": False, "consecutive_failures": 0}
    assert paused.after == {"paused": True, "halted": False, "consecutive_failures": 0}
    assert resumed.before == {
        "paused": True,
        "halted": True,
        "consecutive_failures": warmpool.HARD_LIMIT,
    }
    assert resumed.after == {"paused": False, "halted": False, "consecutive_failures": 0}


def test_a_schedule_is_created_through_the_form_and_audited(admin_client, warm_profile):
    response = admin_client.post(
        reverse("pools:poolschedule_add"),
        {
            "profile": warm_profile.pk,
            "name": "Weekend",
            "weekdays": ["5", "6"],
            "start_time": "00:00",
            "end_time": "00:00",
            "desired_capacity": "2",
        },
    )
    assert response.status_code == HTTPStatus.FOUND
    schedule = PoolSchedule.objects.get()
    assert schedule.weekdays == [5, 6] and str(schedule) == "Weekend (Sat–Sun 00:00–00:00)"
    assert AuditEntry.objects.filter(object_repr=str(schedule), action="created").exists()


def test_overlapping_windows_of_one_profile_are_refused_with_a_field_error(
    admin_client, warm_profile, weekend
):
    response = admin_client.post(
        reverse("pools:poolschedule_add"),
        {
            "profile": warm_profile.pk,
            "weekdays": ["4", "5"],
            "start_time": "18:00",
            "end_time": "00:00",
            "desired_capacity": "4",
        },
    )
    assert response.status_code == HTTPStatus.OK
    errors = response.context["form"].errors
    assert (
        "Overlaps the window “Weekend (Sat–Sun 00:00–00:00)” of the same profile"
        in (errors["start_time"][0])
    )
    assert PoolSchedule.objects.count() == 1


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"weekdays": []}, "weekdays", "This field is required."),
        ({"start_time": "18:00", "end_time": "06:00"}, "end_time", "add two windows"),
        ({"desired_capacity": "2147483647"}, "desired_capacity", "Give at most 100 instances"),
    ],
)
def test_bad_schedules_get_field_errors(admin_client, warm_profile, data, field, message):
    post = {
        "profile": warm_profile.pk,
        "weekdays": ["0"],
        "start_time": "08:00",
        "end_time": "18:00",
        "desired_capacity": "4",
    } | data
    response = admin_client.post(reverse("pools:poolschedule_add"), post)
    assert response.status_code == HTTPStatus.OK
    assert message in response.context["form"].errors[field][0]


def test_windows_on_other_days_or_profiles_do_not_overlap(warm_profile, weekend):
    weekdays = PoolSchedule(
        profile=warm_profile,
        weekdays=[0, 1, 2, 3, 4],
        start_time=time(8),
        end_time=time(18),
        desired_capacity=4,
    )
    weekdays.full_clean()


def test_the_pools_page_query_count_does_not_grow_with_instances(
    admin_client, warm_profile, django_assert_max_num_queries
):
    make_instances(warm_profile, 50)
    LoopDecision.objects.bulk_create(
        LoopDecision(
            profile=warm_profile, desired=9, ready=i % 9, provisioning=0, action="none", reason="r"
        )
        for i in range(200)
    )
    with django_assert_max_num_queries(20):
        admin_client.get(reverse("pools:pool_list"))
    with django_assert_max_num_queries(25):
        admin_client.get(reverse("pools:pool_detail", args=[warm_profile.pk]))


def test_the_self_service_page_says_ready_now_when_an_instance_is_warm(
    client, member, warm_profile
):
    make_instances(warm_profile, 3)
    client.force_login(member)
    html = client.get(reverse("workspaces:self_service")).content.decode()
    assert "ready now (warm)" in html
    response = client.post(
        reverse("workspaces:request", args=[warm_profile.pk]), {"name": "w"}, follow=True
    )
    assert "ready now from the warm pool (pool-" in response.content.decode()
