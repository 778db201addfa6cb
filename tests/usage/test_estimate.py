"""The cost estimate on the self-service cards: "about $1.20 per hour", from the prices."""

from decimal import Decimal

from django.urls import reverse

from profiles.models import ComputeProfile
from tests.usage.pricing import priced_profile
from usage.models import Price
from usage.prices import Line, PriceBook, annotate_costs


def test_the_self_service_card_shows_the_cost_per_hour(
    client, member, local_infrastructure, profile_factory
):
    priced_profile(local_infrastructure, profile_factory)
    client.force_login(member)
    page = client.get(reverse("workspaces:self_service")).content.decode()
    assert "about $1.20 per hour" in page


def test_estimates_cost_one_query_however_many_profiles(
    local_infrastructure, profile_factory, django_assert_num_queries
):
    priced_profile(local_infrastructure, profile_factory)
    for name in ("Two", "Three", "Four"):
        profile_factory(local_infrastructure, name, groups=(("A100-40GB", 2),))
    profiles = list(
        ComputeProfile.objects.select_related("infrastructure").prefetch_related("resource_groups")
    )
    with django_assert_num_queries(1):
        annotate_costs(profiles)
    # 2 GPUs at $1.10, and the default 10 GB at $0.73 a GB-month ($0.01 an hour).
    assert {p.name: p.cost for p in profiles}["Four"] == "about $2.21 per hour"


def test_an_admin_price_wins_over_the_public_one_and_a_region_over_every_region(db):
    line = Line(instance_type="g5.xlarge", instances=2, provider="aws", region="us-east-1")
    assert PriceBook().rate(line).per_hour == Decimal("2.012")  # public: 2 x $1.006
    Price.objects.create(kind=Price.Kind.INSTANCE_TYPE, key="g5.xlarge", amount=Decimal("0.9"))
    assert PriceBook().rate(line).per_hour == Decimal("1.8")
    Price.objects.create(
        kind=Price.Kind.INSTANCE_TYPE, key="g5.xlarge", region="us-east-1", amount=Decimal("0.8")
    )
    assert PriceBook().rate(line).per_hour == Decimal("1.6")


def test_without_any_price_a_card_shows_no_cost(db):
    rate = PriceBook().rate(Line(gpu_model="T4", gpus=1, gpu_share=1.0, storage_gb=10))
    assert (rate.per_hour, rate.complete) == (0, False)


def test_the_self_service_page_links_the_groups_usage(client, member):
    client.force_login(member)
    page = client.get(reverse("workspaces:self_service")).content.decode()
    assert reverse("usage:showback") in page
