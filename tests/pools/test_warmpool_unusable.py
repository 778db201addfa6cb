"""The loop does not create instances where they could only fail."""

import pytest

from pools import warmpool
from pools.models import LoopDecision, PoolInstance
from profiles.choices import AllocationStrategy

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
