"""Public on-demand prices of the cloud instance types the support catalog knows.

Only prices that could be sourced are here; every other instance type has none until an
administrator sets one (`usage.models.Price`), and its estimate says so.

Source: AWS EC2 On-Demand Linux prices in USD per instance-hour, as published by
instances.vantage.sh (from the AWS Price List API) and mirrored in the files
`data/g5_instances.js` and `data/p4d_instances.js` of github.com/tsaol/aws-gpu, read on
2026-11-30. AWS changes its prices; an administrator's price always wins.
"""

from decimal import Decimal

_AWS_REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1")

# instance type: prices in the regions of `_AWS_REGIONS`, in that order.
_AWS_ON_DEMAND: dict[str, tuple[str, ...]] = {
    "g5.xlarge": ("1.006", "1.006", "1.006", "1.123", "1.258"),
    "g5.2xlarge": ("1.212", "1.212", "1.212", "1.35296", "1.5156"),
    "g5.4xlarge": ("1.624", "1.624", "1.624", "1.81287", "2.03081"),
    "g5.8xlarge": ("2.448", "2.448", "2.448", "2.73271", "3.06122"),
    "g5.12xlarge": ("5.672", "5.672", "5.672", "6.33167", "7.09282"),
    "g5.16xlarge": ("4.096", "4.096", "4.096", "4.57237", "5.12204"),
    "g5.24xlarge": ("8.144", "8.144", "8.144", "9.09117", "10.18405"),
    "g5.48xlarge": ("16.288", "16.288", "16.288", "18.18233", "20.3681"),
    "p4d.24xlarge": ("21.957642", "21.95764", "21.95764", "23.71569", "27.43298"),
}

SOURCE = "AWS on-demand price (instances.vantage.sh, read 2026-11-30)"

PRICES: dict[tuple[str, str, str], Decimal] = {
    ("aws", name, region): Decimal(price)
    for name, prices in _AWS_ON_DEMAND.items()
    for region, price in zip(_AWS_REGIONS, prices, strict=True)
}


def instance_hour(provider: str, instance_type: str, region: str) -> Decimal | None:
    """The public on-demand price of one instance-hour, or None where it is not known."""
    return PRICES.get((provider, instance_type, region))
