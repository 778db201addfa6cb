"""A compute profile with prices, for the cost estimate's tests (pages and browser)."""

from decimal import Decimal

from usage.models import Price


def priced_profile(local_infrastructure, profile_factory):
    local_infrastructure.single_user_host = True
    local_infrastructure.save()
    profile = profile_factory(
        local_infrastructure, "One A100", groups=(("A100-40GB", 1),), published=True
    )
    profile.resource_groups.update(storage_gb=100)
    Price.objects.create(kind=Price.Kind.GPU_MODEL, key="A100-40GB", amount=Decimal("1.10"))
    # 100 GB at $0.73 per GB-month is $0.10 an hour.
    Price.objects.create(kind=Price.Kind.STORAGE, amount=Decimal("0.73"))
    return profile
