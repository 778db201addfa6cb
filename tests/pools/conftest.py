from tests.pools.warm_fixtures import warm_profile  # noqa: F401
