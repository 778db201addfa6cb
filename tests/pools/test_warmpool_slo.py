"""Warm pools sized by an SLO in the live system: settings, the loop, the page, estimates."""

# ruff: noqa: F811
import random
from datetime import datetime, timedelta
from http import HTTPStatus
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from bench import pools as bench
from pools import claims, promises, sizing, slo, warmpool
from pools.lifecycle import State
from pools.models import LoopDecision, Pool, PoolInstance, Workspace
from portal.models import AuditEntry
from profiles.choices import AllocationStrategy
from tests.workspace_fixtures import starter  # noqa: F401
from workspaces import estimates

TZ = ZoneInfo("Europe/Berlin")
DAY_ONE = datetime(2025, 6, 2, tzinfo=TZ)  # a Monday, midnight
PROVISIONING = timedelta(seconds=300)


@pytest.fixture(autouse=True)
def org_time_zone(settings):
    settings.TIME_ZONE = "Europe/Berlin"


@pytest.fixture
def gpu_profile(local_infrastructure, profile_factory):
    profile = profile_factory(
        local_infrastructure,
        "One GPU",
        groups=(("A100-40GB", 1),),
        published=True,
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=2,
    )
    # It exists since before the simulated history (what the policy may learn from).
    type(profile).objects.filter(pk=profile.pk).update(created=DAY_ONE - timedelta(days=1))
    profile.refresh_from_db()
    return profile


def sized(profile, **fields) -> Pool:
    defaults = {"sizing": Pool.Sizing.SLO, "slo_percent": 95, "slo_seconds": 60}
    pool, _ = Pool.objects.update_or_create(profile=profile, defaults=defaults | fields)
    return pool


def sizing_url(profile) -> str:
    return reverse("pools:pool_sizing", args=[profile.pk])


def form_data(**fields) -> dict:
    data = {
        "sizing": "slo",
        "slo_percent": "95",
        "slo_seconds": "60",
        "idle_budget": "40",
        "min_size": "0",
        "max_size": "10",
    }
    return data | {k: str(v) for k, v in fields.items()}


# -- settings ---------------------------------------------------------------------------


def test_an_admin_sizes_a_pool_by_slo_and_the_change_is_audited(admin_client, gpu_profile):
    page = admin_client.get(sizing_url(gpu_profile))
    assert page.status_code == HTTPStatus.OK
    assert "not measured yet (assumed 300 s)" in page.content.decode()
    response = admin_client.post(sizing_url(gpu_profile), form_data(idle_budget="30"))
    assert response.status_code == HTTPStatus.FOUND
    assert response.url == reverse("pools:pool_detail", args=[gpu_profile.pk])
    pool = Pool.objects.get(profile=gpu_profile)
    assert (pool.sizing, pool.slo_percent, pool.slo_seconds) == ("slo", 95, 60)
    assert (pool.idle_budget, pool.min_size, pool.max_size) == (30, 0, 10)
    assert AuditEntry.objects.filter(object_id=str(pool.pk)).exists()


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"slo_percent": "100"}, "slo_percent", "100 % cannot be promised"),
        ({"slo_percent": "20"}, "slo_percent", "from 50 to 99.9"),
        ({"slo_percent": "99.95"}, "slo_percent", "from 50 to 99.9"),
        ({"slo_seconds": "0"}, "slo_seconds", "from 1 to 86,400 seconds (a day)"),
        ({"slo_seconds": "86401"}, "slo_seconds", "from 1 to 86,400 seconds (a day)"),
        ({"slo_seconds": "99999999999"}, "slo_seconds", "from 1 to 86,400 seconds (a day)"),
        ({"min_size": "5", "max_size": "3"}, "min_size", "above the maximum (3)"),
        ({"max_size": "0"}, "max_size", "from 1 to 100"),
        ({"max_size": "500"}, "max_size", "from 1 to 100"),
        ({"idle_budget": "-1"}, "idle_budget", "positive number"),
        ({"idle_budget": "1e308"}, "idle_budget", "at most 1,000,000 GPU-hours a day"),
        ({"idle_budget": "40", "min_size": "2"}, "idle_budget", "can idle 48 GPU-hours a day"),
        ({"slo_percent": "lots"}, "slo_percent", "Enter a number"),
    ],
)
def test_bad_settings_are_refused_with_a_field_error(
    admin_client, gpu_profile, fields, field, message
):
    response = admin_client.post(sizing_url(gpu_profile), form_data(**fields))
    assert response.status_code == HTTPStatus.OK
    errors = response.context["form"].errors
    assert field in errors
    assert message in " ".join(errors[field])
    assert not Pool.objects.filter(profile=gpu_profile, sizing="slo").exists()


def test_the_bounds_of_the_slo_themselves_are_accepted(admin_client, gpu_profile):
    response = admin_client.post(
        sizing_url(gpu_profile), form_data(slo_percent="99.9", slo_seconds="86400")
    )
    assert response.status_code == HTTPStatus.FOUND
    pool = Pool.objects.get(profile=gpu_profile)
    assert (pool.slo_percent, pool.slo_seconds) == (99.9, 86400)


def test_an_on_demand_profile_cannot_be_sized_by_slo(admin_client, starter):
    response = admin_client.post(sizing_url(starter), form_data())
    assert "make it a warm-pool profile first" in " ".join(
        response.context["form"].errors["sizing"]
    )


def test_a_mig_slice_counts_as_its_share_of_a_gpu(local_infrastructure, profile_factory):
    profile = profile_factory(local_infrastructure, "Slices", groups=(("A100-40GB", 2),))
    profile.resource_groups.update(mig_profile="3g.20gb")
    assert slo.gpu_share(profile) == pytest.approx(2 * 3 / 7)


def test_members_may_not_change_the_sizing(client, member, gpu_profile):
    client.force_login(member)
    assert client.post(sizing_url(gpu_profile), form_data()).status_code == HTTPStatus.FORBIDDEN


# -- the loop ---------------------------------------------------------------------------


def request_at(owner, profile, moment: datetime, warm: bool) -> Workspace:
    """A request as the portal records it: ready at once from the pool, or on demand."""
    ready_at = moment if warm else moment + PROVISIONING
    return Workspace.objects.create(
        owner=owner,
        profile=profile,
        infrastructure=profile.infrastructure,
        state=State.READY,
        created=moment,
        ready_at=ready_at,
    )


def past_demand(owner, profile, days: int, seed: int = 5) -> list[datetime]:
    """Office-hours demand like `day_of_demand`, as on-demand workspaces (provisioning 300 s)."""
    moments = [
        m for day in range(days) for m in day_of_demand(DAY_ONE + timedelta(day), seed + day)
    ]
    on_demand_requests(owner, profile, moments)
    return moments


def on_demand_requests(owner, profile, moments, still_provisioning: bool = False) -> None:
    """Workspaces requested at `moments` and made on demand: ready one provisioning later
    (and deleted since), or still provisioning."""
    Workspace.objects.bulk_create(
        Workspace(
            owner=owner,
            profile=profile,
            infrastructure=profile.infrastructure,
            state=State.PROVISIONING if still_provisioning else State.DELETED,
            created=m,
            ready_at=None if still_provisioning else m + PROVISIONING,
        )
        for m in moments
    )


def day_of_demand(midnight: datetime, seed: int) -> list[datetime]:
    """09:00–18:00: a session every 20–50 min, each 1–4 requests 70–200 s apart."""
    rng = random.Random(seed)
    moments, moment = [], midnight + timedelta(hours=9, seconds=rng.uniform(0, 900))
    while moment < midnight + timedelta(hours=18):
        at = moment
        for _ in range(rng.choice([1, 1, 2, 3, 4])):
            moments.append(at)
            at += timedelta(seconds=rng.uniform(70, 200))
        moment += timedelta(seconds=rng.uniform(1200, 3000))
    return moments


def provision_until(profile, now: datetime) -> None:
    """What the workers would do: requested instances are ready one provisioning later, and
    one promised to a waiting workspace is handed over to it then."""
    for instance in PoolInstance.objects.filter(
        profile=profile, state__in=(State.REQUESTED, State.PROVISIONING)
    ):
        ready_at = instance.created + PROVISIONING
        if ready_at > now:
            continue
        taken = instance.workspace_id is not None
        PoolInstance.objects.filter(pk=instance.pk).update(
            state=State.CLAIMED if taken else State.READY, ready_at=ready_at
        )
        if taken:
            Workspace.objects.filter(pk=instance.workspace_id).update(
                state=State.READY, ready_at=ready_at
            )


def claim_at(owner, profile, moment: datetime) -> bool:
    """A request at `moment`: claims the oldest ready instance, else waits for the one
    on its way that the portal promises it (`pools.promises`), else provisions on demand.
    Whether it is ready within 60 s."""
    instance = claims.claimable(profile).first()
    if instance is not None:
        workspace = request_at(owner, profile, moment, warm=True)
        PoolInstance.objects.filter(pk=instance.pk, state=State.READY).update(
            state=State.CLAIMED, claimed_at=moment, workspace=workspace
        )
        return True
    workspace = Workspace.objects.create(
        owner=owner,
        profile=profile,
        infrastructure=profile.infrastructure,
        state=State.PROVISIONING,
        created=moment,
    )
    late = promises.Patience.of(300, measured=True).seconds
    waited_for = promises.promise(workspace, owner, p50=300, within=60, late=late, now=moment)
    if waited_for is None:
        Workspace.objects.filter(pk=workspace.pk).update(
            state=State.READY, ready_at=moment + PROVISIONING
        )
        return False
    return waited_for.created + PROVISIONING - moment <= timedelta(seconds=60)


def step(profile, now: datetime) -> LoopDecision:
    """One pass of the loop at `now`; the instances it requests are dated `now` too, and a
    worker starts provisioning them at once."""
    decision = warmpool.reconcile_profile(profile.pk, now)
    assert decision is not None, "the loop lock was busy"
    PoolInstance.objects.filter(profile=profile, created__gt=now).update(created=now)
    PoolInstance.objects.filter(profile=profile, state=State.REQUESTED).update(
        state=State.PROVISIONING
    )
    return decision


def test_the_loop_sizes_an_slo_pool_and_says_why(member, gpu_profile):
    sized(gpu_profile, idle_budget=40)
    past_demand(member, gpu_profile, days=7)
    now = DAY_ONE + timedelta(days=7, hours=10)
    decision = step(gpu_profile, now)
    assert decision.reason.startswith(f"SLO 95 % ≤ 60 s: target {decision.desired}")
    assert "provisioning p90 300 s" in decision.reason
    assert "budget 40 GPU-h/day, 0.0 used today" in decision.reason
    assert decision.action == LoopDecision.Action.CREATE
    assert decision.count == decision.desired > 0
    # The next pass says what it was, and the page shows the same reason.
    provision_until(gpu_profile, now + PROVISIONING)
    later = step(gpu_profile, now + PROVISIONING)
    assert later.ready == decision.desired


def test_a_binding_budget_wins_and_the_page_says_the_slo_is_at_risk(
    admin_client, member, gpu_profile
):
    sized(gpu_profile, idle_budget=0.01)  # not one instance for even a minute
    now = timezone.now()
    rng, moments, moment = random.Random(1), [], now - timedelta(seconds=60)
    while moment > now - timedelta(days=7):  # a request every 2–15 min, day and night
        moments.append(moment)
        moment -= timedelta(seconds=rng.uniform(120, 900))
    on_demand_requests(member, gpu_profile, moments)
    type(gpu_profile).objects.filter(pk=gpu_profile.pk).update(created=now - timedelta(days=8))
    decision = step(gpu_profile, now)
    assert decision.desired == 0
    assert decision.reason.startswith("SLO at risk: the idle budget allows 0, the SLO asks for")
    html = admin_client.get(reverse("pools:pool_detail", args=[gpu_profile.pk])).content.decode()
    assert 'data-alert="slo-at-risk"' in html
    assert "SLO at risk: the idle budget allows 0, the SLO asks for" in html


def test_a_huge_idle_budget_stored_before_it_was_bounded_breaks_neither_the_loop_nor_the_page(
    admin_client, gpu_profile, warm_profile, monkeypatch
):
    # In the budget's last minute, 1e308 GPU-hours over what is left of the day is inf.
    last_minute = DAY_ONE + timedelta(hours=23, minutes=59, seconds=30)
    sized(gpu_profile, idle_budget=1e308, max_size=10)
    assert warmpool.run_loop(now=last_minute)["ran"]
    decision = LoopDecision.objects.get(profile=gpu_profile)
    assert decision.reason.startswith("SLO 95 % ≤ 60 s: target ")
    assert "budget 1e+308 GPU-h/day, 0.0 used today" in decision.reason
    assert PoolInstance.objects.filter(profile=warm_profile).count() == 9  # the other pool
    monkeypatch.setattr(timezone, "now", lambda: last_minute)
    assert admin_client.get(reverse("pools:pool_list")).status_code == HTTPStatus.OK


def test_a_pool_whose_sizing_fails_keeps_its_target_and_every_other_pool_goes_on(
    gpu_profile, warm_profile, monkeypatch
):
    sized(gpu_profile, min_size=1)
    now = DAY_ONE + timedelta(hours=10)
    assert step(gpu_profile, now).desired == 1

    def broken(history, settings, now):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(sizing, "size", broken)
    assert warmpool.run_loop(now=now + timedelta(minutes=1))["ran"]
    assert PoolInstance.objects.filter(profile=warm_profile).count() == 9
    decision = LoopDecision.objects.filter(profile=gpu_profile).latest("time")
    assert decision.desired == 1
    assert decision.reason.startswith(
        "the SLO sizing failed (Unexpected ZeroDivisionError): keeping its previous target 1"
    )


def test_the_loop_and_the_simulator_call_the_same_policy_function(monkeypatch, member, gpu_profile):
    calls = []
    policy = sizing.size

    def spy(history, settings, now):
        calls.append(type(history))
        return policy(history, settings, now)

    monkeypatch.setattr(sizing, "size", spy)
    sized(gpu_profile)
    step(gpu_profile, DAY_ONE + timedelta(hours=10))
    assert len(calls) == 1, "the loop asks pools.sizing.size"
    trace = bench.Trace("t", [bench.TRACE_ORIGIN + 1000, bench.TRACE_ORIGIN + 2000])
    settings = sizing.SloSettings()
    bench.simulate(
        trace, bench.Draw([300.0]), settings, "slo", bench.SloPolicy(settings, trace.start)
    )
    assert len(calls) > 2, "the simulator asks pools.sizing.size"
    assert set(calls) == {sizing.History}
    assert bench.sizing is slo.sizing is warmpool.sizing


def test_driven_step_by_step_over_a_day_the_live_loop_keeps_the_slo(member, gpu_profile):
    """Two weeks of history, then one day replayed against the real loop: a pass every two
    minutes from 08:30 to 18:30, and one after every request (as a claim triggers one)."""
    sized(gpu_profile, idle_budget=60, max_size=8)
    past_demand(member, gpu_profile, days=14)
    day = DAY_ONE + timedelta(days=14)
    requests = day_of_demand(day, seed=99)
    now, end = day + timedelta(hours=8, minutes=30), day + timedelta(hours=18, minutes=30)
    within, pending = 0, list(requests)
    while now <= end:
        provision_until(gpu_profile, now)
        while pending and pending[0] <= now:
            moment = pending.pop(0)
            provision_until(gpu_profile, moment)
            within += claim_at(member, gpu_profile, moment)
            step(gpu_profile, moment)
        step(gpu_profile, now)
        now += timedelta(minutes=2)
    provision_until(gpu_profile, end + PROVISIONING)  # the last ones waiting get theirs
    assert len(requests) >= 30
    assert within / len(requests) >= 0.95
    decisions = LoopDecision.objects.filter(profile=gpu_profile)
    assert all(d.reason.startswith(("SLO 95 % ≤ 60 s", "SLO at risk")) for d in decisions)
    assert not any("little history" in d.reason for d in decisions)
    # Not simply the largest pool all day: the target follows demand.
    assert len({d.desired for d in decisions}) > 1
    assert max(d.desired for d in decisions) < 8
    # The page's measure agrees: every request of the day ready within 60 s or not.
    assert slo.attainment_counts(gpu_profile.pk, 60, day, end + PROVISIONING) == (
        len(requests),
        within,
        0,
    )


# -- what people see --------------------------------------------------------------------


def test_the_pool_page_shows_seven_days_of_slo_attainment_idle_hours_and_the_chart(
    admin_client, member, gpu_profile
):
    sized(gpu_profile, idle_budget=40)
    for hours, warm in ((1, True), (2, True), (3, False)):
        request_at(member, gpu_profile, DAY_ONE.now(TZ) - timedelta(hours=hours), warm)
    PoolInstance.objects.create(
        profile=gpu_profile,
        infrastructure=gpu_profile.infrastructure,
        state=State.READY,
        created=DAY_ONE.now(TZ) - timedelta(hours=24),
        ready_at=DAY_ONE.now(TZ) - timedelta(hours=23),
    )
    step(gpu_profile, DAY_ONE.now(TZ))
    html = admin_client.get(reverse("pools:pool_detail", args=[gpu_profile.pk])).content.decode()
    assert "by SLO: 95 % of requests ready within 60 s, 0–10 instances" in html
    assert "66.7 %" in html and "2 of 3 requests ready within 60 s" in html
    assert '<td data-metric="idle-gpu">3.4 ' in html  # 24 GPU-hours in 7 days
    assert 'class="target"' in html and 'class="ready"' in html and 'class="claims"' not in html
    assert 'href="' + sizing_url(gpu_profile) + '"' in html


def test_the_measured_provisioning_is_the_newest_of_pool_instances_and_on_demand_together(
    monkeypatch, member, gpu_profile
):
    monkeypatch.setattr(slo, "PROVISIONING_SAMPLES", 3)
    now = DAY_ONE + timedelta(days=1)

    def provisioned(model, minutes_ago: int, seconds: int, **fields):
        ready_at = now - timedelta(minutes=minutes_ago)
        return model.objects.create(
            infrastructure=gpu_profile.infrastructure,
            profile=gpu_profile,
            state=State.DELETED,
            created=ready_at - timedelta(seconds=seconds),
            ready_at=ready_at,
            **fields,
        )

    for minutes_ago in (50, 40, 30):  # older than the newest three: left out
        provisioned(Workspace, minutes_ago, 100, owner=member)
    provisioned(PoolInstance, 20, 400)
    provisioned(Workspace, 10, 500, owner=member)
    provisioned(PoolInstance, 5, 600)
    measured = slo.provisioning([gpu_profile.infrastructure_id], now)
    assert measured[gpu_profile.infrastructure_id].samples == (400, 500, 600)


def test_the_request_page_estimate_says_ready_now_or_the_measured_p50(member, gpu_profile):
    gpu_profile.refresh_from_db()
    assert estimates.estimate(gpu_profile) == "ready in seconds"  # local default: no history
    request_at(member, gpu_profile, DAY_ONE.now(TZ) - timedelta(hours=1), warm=False)
    assert estimates.estimate(gpu_profile) == (
        "about 5 minutes (provisioning p50 on this infrastructure)"
    )
    PoolInstance.objects.create(
        profile=gpu_profile,
        infrastructure=gpu_profile.infrastructure,
        state=State.READY,
        ready_at=DAY_ONE.now(TZ),
    )
    assert estimates.estimate(gpu_profile) == "ready now (warm)"
