"""The loop does not create instances where they could only fail, and says why."""

import pytest
from django.urls import reverse

from pools import warmpool
from pools.models import LoopDecision, PoolInstance
from profiles.choices import AllocationStrategy, PartitioningMode
from profiles.models import PartitioningStrategy

pytestmark = pytest.mark.django_db


def test_a_pool_on_infrastructure_without_credentials_waits_and_says_why(
    aws_infrastructure, profile_factory
):
    profile = profile_factory(
        aws_infrastructure,
        "Small",
        groups=(("A100-40GB", 1),),
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=9,
    )
    decision = warmpool.reconcile_profile(profile.pk)
    assert decision.action == LoopDecision.Action.UNUSABLE
    assert "No credentials" in decision.reason
    assert not PoolInstance.objects.filter(profile=profile).exists()

    aws_infrastructure.credentials = {"role_arn": "arn:aws:iam::1:role/x", "external_id": "e"}
    aws_infrastructure.save()
    decision = warmpool.reconcile_profile(profile.pk)
    assert decision.action == LoopDecision.Action.CREATE
    assert PoolInstance.objects.filter(profile=profile).count() == 9


def test_a_pool_whose_mig_slices_its_partitioning_no_longer_offers_waits_and_says_why(
    admin_client, local_infrastructure, profile_factory
):
    strategy = PartitioningStrategy.objects.create(
        infrastructure=local_infrastructure, gpu_model="A100-40GB", mode=PartitioningMode.WHOLE
    )
    profile = profile_factory(
        local_infrastructure,
        "Slice",
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=2,
    )
    profile.resource_groups.update(gpu_model="A100-40GB", gpu_count=1, mig_profile="3g.20gb")

    decision = warmpool.reconcile_profile(profile.pk)

    assert decision.action == LoopDecision.Action.UNUSABLE
    gone = "offers no 3g.20gb of A100-40GB slices any more"
    assert gone in decision.reason
    assert not PoolInstance.objects.filter(profile=profile).exists()
    assert gone in admin_client.get(reverse("pools:pool_list")).content.decode()

    strategy.mode, strategy.custom_counts = PartitioningMode.CUSTOM, {"3g.20gb": 2}
    strategy.save()
    decision = warmpool.reconcile_profile(profile.pk)
    assert decision.action == LoopDecision.Action.CREATE
    assert PoolInstance.objects.filter(profile=profile).count() == 2
