"""Infrastructure drivers, chosen by the kind (and provider) of an infrastructure entry."""

from importlib import import_module

from pools.drivers.base import Driver, PermanentError

# (kind, provider) → "module:Class"; imported lazily so a driver's client library is only
# loaded where it is used.
DRIVERS = {
    ("local", ""): "pools.drivers.local:LocalDriver",
    ("kubernetes", ""): "pools.drivers.kubernetes:KubernetesDriver",
    ("public_cloud", "aws"): "pools.drivers.aws:AwsDriver",
}


def driver_class(infrastructure) -> type[Driver] | None:
    provider = infrastructure.provider if infrastructure.kind == "public_cloud" else ""
    path = DRIVERS.get((infrastructure.kind, provider))
    if path is None:
        return None
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


def driver_for(infrastructure) -> Driver:
    cls = driver_class(infrastructure)
    if cls is None:
        raise PermanentError(
            f"The portal cannot provision on {infrastructure} yet "
            f"({infrastructure.get_kind_display()} {infrastructure.provider}).".replace(" )", ")")
        )
    return cls(infrastructure)
