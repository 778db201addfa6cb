"""`/metrics`: who may read it, and that its numbers are the database's."""

from datetime import timedelta
from http import HTTPStatus
from ipaddress import ip_network

import pytest
from django.utils import timezone
from django_q.tasks import async_task

from pools.lifecycle import State
from pools.metrics import normalize_reason
from pools.models import LoopDecision, PoolInstance, Workspace
from profiles.choices import AllocationStrategy
from tests.deploy.metrics_helpers import parse, total, value

TOKEN = "s3cret-metrics-token"


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    return TOKEN


def scrape(client) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == HTTPStatus.OK
    assert response["Content-Type"].startswith("text/plain; version=")
    return parse(response.content.decode())


# -- access ----------------------------------------------------------------------------


def test_metrics_are_off_until_a_token_or_an_allow_list_is_set(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics").status_code == HTTPStatus.NOT_FOUND


@pytest.mark.parametrize(
    "header",
    ["", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"],
)
def test_metrics_refuse_a_missing_or_wrong_token(client, metrics_token, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.content == b""


@pytest.mark.django_db
def test_metrics_answer_the_token_from_any_host(client, metrics_token):
    response = client.get(
        "/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", HTTP_HOST="10.244.1.7:8000"
    )
    assert response.status_code == HTTPStatus.OK


@pytest.mark.django_db
def test_metrics_answer_an_allowed_address_without_a_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = [ip_network("10.0.0.0/8")]
    assert client.get("/metrics", REMOTE_ADDR="10.3.4.5").status_code == HTTPStatus.OK
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == HTTPStatus.FORBIDDEN
    # On a dual-stack bind an IPv4 client arrives in its IPv4-mapped IPv6 form.
    mapped = client.get("/metrics", REMOTE_ADDR="::ffff:10.3.4.5")
    assert mapped.status_code == HTTPStatus.OK
    assert client.get("/metrics", REMOTE_ADDR="::ffff:192.0.2.1").status_code == 403


@pytest.mark.django_db
def test_metrics_refuse_a_client_outside_the_allow_list_behind_the_ingress(client, settings):
    """The ingress controller is a pod, in the allowed network, whoever it forwards."""
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = [ip_network("10.0.0.0/8")]
    settings.TRUSTED_PROXY_COUNT = 1  # as deploy/base's ConfigMap sets it
    forwarded = client.get(
        "/metrics", REMOTE_ADDR="10.244.3.17", HTTP_X_FORWARDED_FOR="203.0.113.50"
    )
    assert forwarded.status_code == HTTPStatus.FORBIDDEN
    # Prometheus, scraping the pod directly from the allowed network, is still let in.
    assert client.get("/metrics", REMOTE_ADDR="10.244.9.9").status_code == HTTPStatus.OK


# -- values ----------------------------------------------------------------------------


@pytest.fixture
def warm(local_infrastructure, profile_factory):
    return profile_factory(
        local_infrastructure,
        "Warm",
        published=True,
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=3,
    )


@pytest.fixture
def on_demand(local_infrastructure, profile_factory):
    return profile_factory(local_infrastructure, "OnDemand", published=True)


def workspace(owner, profile, state, created, ready_after=None, **fields):
    return Workspace.objects.create(
        owner=owner,
        profile=profile,
        infrastructure=profile.infrastructure,
        state=state,
        created=created,
        ready_at=created + timedelta(seconds=ready_after) if ready_after is not None else None,
        **fields,
    )


def instance(profile, state, created, ready_after=None, **fields):
    return PoolInstance.objects.create(
        profile=profile,
        infrastructure=profile.infrastructure,
        profile_version=profile.version,
        state=state,
        created=created,
        ready_at=created + timedelta(seconds=ready_after) if ready_after is not None else None,
        **fields,
    )


@pytest.mark.django_db
def test_metrics_agree_with_the_database(client, metrics_token, member, warm, on_demand):
    now = timezone.now()
    hour_ago = now - timedelta(hours=1)
    # On demand: two ready after 40 s and 200 s, one still provisioning, one failed.
    workspace(member, on_demand, State.READY, hour_ago, 40)
    workspace(member, on_demand, State.READY, hour_ago, 200)
    workspace(member, on_demand, State.PROVISIONING, now)
    failed = workspace(member, on_demand, State.FAILED, hour_ago)
    failed.log_event(State.PROVISIONING, State.FAILED, "gave up after 6 attempts: disk 42 full")
    # Warm: one request got an instance (idle 100 s before the claim), one missed.
    hit = workspace(member, warm, State.READY, hour_ago, 0)
    workspace(member, warm, State.REQUESTED, now)
    instance(
        warm,
        State.CLAIMED,
        hour_ago - timedelta(seconds=130),
        30,
        claimed_at=hour_ago,
        workspace=hit,
    )
    instance(warm, State.READY, now - timedelta(seconds=70), 10)  # idle for 60 s so far
    instance(warm, State.REQUESTED, now)
    # A stopped workspace started again: 25 s from Start to ready.
    restarted = workspace(member, on_demand, State.READY, hour_ago, 40)
    start = hour_ago + timedelta(minutes=5)
    restarted.events.create(
        timestamp=start, from_state=State.STOPPED, to_state=State.STARTING, message="start"
    )
    restarted.events.create(
        timestamp=start + timedelta(seconds=25),
        from_state=State.STARTING,
        to_state=State.READY,
        message="ready",
    )

    samples = scrape(client)

    for state in State.values:
        for profile in (warm, on_demand):
            expected = Workspace.objects.filter(state=state, profile=profile).count()
            got = value(samples, "portal_workspaces", state=state, profile=profile.name)
            assert got == expected, (state, profile.name)
    assert value(samples, "portal_pool_instances", state="ready", profile="Warm") == 1
    assert value(samples, "portal_warm_pool_ready", profile="Warm") == 1
    assert value(samples, "portal_warm_pool_desired", profile="Warm") == 3
    assert value(samples, "portal_warm_pool_claims_total", profile="Warm", result="hit") == 1
    assert value(samples, "portal_warm_pool_claims_total", profile="Warm", result="miss") == 1
    idle = value(samples, "portal_warm_pool_idle_instance_seconds_total", profile="Warm")
    assert 100 + 60 <= idle < 100 + 60 + 5

    ready = "portal_workspace_ready_duration_seconds"
    labels = {"profile": "OnDemand", "source": "on_demand"}
    assert value(samples, f"{ready}_count", **labels) == 3
    assert value(samples, f"{ready}_sum", **labels) == 280
    assert value(samples, f"{ready}_bucket", le="30.0", **labels) == 0
    assert value(samples, f"{ready}_bucket", le="60.0", **labels) == 2
    assert value(samples, f"{ready}_bucket", le="300.0", **labels) == 3
    assert value(samples, f"{ready}_bucket", le="+Inf", **labels) == 3
    assert value(samples, f"{ready}_count", profile="Warm", source="warm") == 1
    provisioning = "portal_pool_instance_provisioning_duration_seconds"
    assert value(samples, f"{provisioning}_count", profile="Warm") == 2
    assert value(samples, f"{provisioning}_sum", profile="Warm") == 40
    start_duration = "portal_workspace_start_duration_seconds"
    assert value(samples, f"{start_duration}_count", profile="OnDemand") == 1
    assert value(samples, f"{start_duration}_sum", profile="OnDemand") == 25
    assert (
        value(
            samples,
            "portal_failures_total",
            kind="workspace",
            profile="OnDemand",
            reason="gave up after N attempts: disk N full",
        )
        == 1
    )
    assert total(samples, "portal_failures_total") == 1


@pytest.mark.django_db
def test_the_queue_depth_and_the_oldest_task_age_come_from_the_broker(client, metrics_token):
    async_task("portal.health.heartbeat")
    async_task("portal.health.heartbeat")
    samples = scrape(client)
    assert value(samples, "portal_task_queue_depth", queue="portal") == 2
    assert 0 <= value(samples, "portal_task_queue_oldest_age_seconds", queue="portal") < 30


@pytest.mark.django_db
def test_request_latency_is_counted_by_route_not_by_path(client, metrics_token, member):
    client.force_login(member)
    before = scrape(client)
    client.get("/workspaces/123456/")
    client.get("/workspaces/654321/")
    after = scrape(client)
    name = "portal_http_request_duration_seconds_count"
    labels = {"method": "GET", "route": "/workspaces/<int:pk>/", "status": "404"}
    assert value(after, name, **labels) - value(before, name, **labels) == 2


@pytest.mark.django_db
def test_a_client_cannot_grow_the_request_histogram_with_methods_of_its_own(client, metrics_token):
    """Each label value is a new series in every worker's memory and multiprocess files."""
    name = "portal_http_request_duration_seconds_count"
    before = total(scrape(client), name, method="other", route="/healthz")
    for i in range(40):
        client.generic(f"INVENTED{i}", "/healthz")
    samples = scrape(client)
    methods = {dict(labels)["method"] for (sample, labels) in samples if sample == name}
    assert not [method for method in methods if method.startswith("INVENTED")]
    assert total(samples, name, method="other", route="/healthz") - before == 40


def test_failure_reasons_lose_their_numbers():
    assert normalize_reason("pool-42 failed after 3 tries") == "pool-N failed after N tries"
    assert normalize_reason("") == "unknown"
    assert len(normalize_reason("x" * 500)) == 120


@pytest.mark.django_db
def test_desired_is_what_the_loop_aimed_at_in_its_latest_pass(client, metrics_token, warm):
    assert value(scrape(client), "portal_warm_pool_desired", profile="Warm") == 3  # configured
    now = timezone.now()
    for minutes_ago, target in ((2, 7), (1, 5)):  # e.g. the SLO policy's targets
        LoopDecision.objects.create(
            time=now - timedelta(minutes=minutes_ago),
            profile=warm,
            desired=target,
            ready=0,
            provisioning=0,
            action=LoopDecision.Action.CREATE,
            reason="SLO target",
        )
    assert value(scrape(client), "portal_warm_pool_desired", profile="Warm") == 5
