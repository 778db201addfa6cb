"""mig-parted configs: build them from the catalog, validate them strictly, wrap them in the
ConfigMap that the GPU Operator's mig-manager reads (Helm value `migManager.config.name`,
key `config.yaml`).

Format (NVIDIA/mig-parted api/spec/v1): `version: v1` and `mig-configs`, mapping a config
name to a non-empty list of entries with `devices` ("all" or GPU indices), `mig-enabled`,
`mig-devices` (profile -> count; required when enabled, `{}` allowed; absent or empty when
disabled) and an optional `device-filter` ("0x20B010DE": PCI device id, then vendor id).
"""

import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from profiles.mig import catalog, layout

VERSION = "v1"
CONFIG_MAP_KEY = "config.yaml"
_ENTRY_FIELDS = {"device-filter", "devices", "mig-enabled", "mig-devices"}
_DEVICE_FILTER = re.compile(r"^0x([0-9A-Fa-f]{4})10DE$")


def device_filter(gpu_model: str) -> list[str]:
    """mig-parted's filter for a model: one "0xDDDD10DE" per PCI device id."""
    return [
        f"0x{pci:04X}{catalog.NVIDIA_VENDOR_ID:04X}"
        for pci in catalog.geometry(gpu_model).pci_device_ids
    ]


def entry(
    counts: Mapping[str, int] | None,
    gpu_models: Iterable[str] = (),
    devices: str | list[int] = "all",
) -> dict[str, Any]:
    """One config entry: MIG disabled when `counts` is None, else these instances.

    With `gpu_models` the entry carries their device filter and applies only to them.
    """
    result: dict[str, Any] = {}
    device_ids = [pci for model in gpu_models for pci in device_filter(model)]
    if device_ids:
        result["device-filter"] = device_ids
    result["devices"] = devices
    result["mig-enabled"] = counts is not None
    if counts is not None:
        result["mig-devices"] = dict(counts)
    return result


def default_config(gpu_models: Iterable[str] | None = None) -> dict[str, Any]:
    """The catalog's named layouts (all-disabled, all-balanced, all-1g.5gb, ...) as one config.

    A name shared by several models gets one entry per distinct layout, each filtered to the
    models it suits: `all-1g.10gb` is 4 instances on A100-40GB but 7 on A100-80GB.
    """
    models = list(gpu_models or catalog.mig_capable_models())
    configs: dict[str, list[dict[str, Any]]] = {
        "all-disabled": [entry(None)],
        "all-enabled": [entry({})],
    }
    by_name: dict[str, dict[tuple, list[str]]] = {}
    for model in models:
        for name, named in catalog.named_layouts(model).items():
            if name in configs:
                continue
            shape = tuple(named.mig_devices.items())
            by_name.setdefault(name, {}).setdefault(shape, []).append(model)
    for name, shapes in by_name.items():
        configs[name] = [entry(dict(shape), group) for shape, group in shapes.items()]
    config = {"version": VERSION, "mig-configs": configs}
    _raise_if_invalid(config)
    return config


def validate_mig_parted_config(config: Any) -> list[str]:
    """Every problem with the config, as "where: what" lines; empty when it is valid."""
    if not isinstance(config, Mapping):
        return ["config: must be a mapping with version and mig-configs"]
    problems = [f"{key}: unknown field" for key in config if key not in ("version", "mig-configs")]
    if config.get("version") != VERSION:
        problems.append(f"version: must be {VERSION!r}, not {config.get('version')!r}")
    configs = config.get("mig-configs")
    if not isinstance(configs, Mapping) or not configs:
        return [*problems, "mig-configs: must map at least one config name to its entries"]
    for name, entries in configs.items():
        if not isinstance(name, str) or not name:
            problems.append(f"mig-configs: config names must be non-empty strings, not {name!r}")
        elif not isinstance(entries, list) or not entries:
            problems.append(f"mig-configs.{name}: must be a non-empty list of entries")
        else:
            for index, item in enumerate(entries):
                where = f"mig-configs.{name}[{index}]"
                problems += [f"{where}{problem}" for problem in _entry_problems(item)]
    return problems


def _entry_problems(item: Any) -> list[str]:
    """Problems of one entry, each starting with "." and the field, or ":"."""
    if not isinstance(item, Mapping):
        return [": must be a mapping"]
    problems = [f".{key}: unknown field" for key in item if key not in _ENTRY_FIELDS]
    problems += [f".{key}: required" for key in ("devices", "mig-enabled") if key not in item]
    devices = item.get("devices", "all")
    if devices != "all" and not _is_index_list(devices):
        problems.append(
            f".devices: must be 'all' or a list of distinct GPU indices ≥ 0, not {devices!r}"
        )
    enabled = item.get("mig-enabled")
    if "mig-enabled" in item and not isinstance(enabled, bool):
        problems.append(f".mig-enabled: must be true or false, not {enabled!r}")
    models, filter_problems = _filtered_models(item)
    problems += filter_problems
    if "mig-devices" not in item:
        if enabled is True:
            problems.append(".mig-devices: required when mig-enabled is true ({} for none)")
        return problems
    counts = item["mig-devices"]
    if not isinstance(counts, Mapping):
        return [*problems, f".mig-devices: must map profile names to counts, not {counts!r}"]
    if enabled is False and counts:
        return [*problems, ".mig-devices: must be absent or empty when mig-enabled is false"]
    bad = [f"{k!r}: {v!r}" for k, v in counts.items() if not _is_count_item(k, v)]
    if bad:
        return [*problems, f".mig-devices: need profile name: count ≥ 0, not {', '.join(bad)}"]
    if counts and not filter_problems:
        problems += _layout_problems(counts, models)
    return problems


def _is_count_item(name: Any, count: Any) -> bool:
    return (
        isinstance(name, str)
        and isinstance(count, int)
        and not isinstance(count, bool)
        and count >= 0
    )


def _is_index_list(devices: Any) -> bool:
    return (
        isinstance(devices, list)
        and bool(devices)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
        and len(set(devices)) == len(devices)
    )


def _filtered_models(item: Mapping) -> tuple[list[str] | None, list[str]]:
    """The models an entry's device-filter selects (None without a filter), and problems."""
    if "device-filter" not in item:
        return None, []
    value = item["device-filter"]
    filters = [value] if isinstance(value, str) else value
    if not isinstance(filters, list) or not filters or not all(isinstance(f, str) for f in filters):
        return None, [f".device-filter: must be a string or a list of strings, not {value!r}"]
    models, problems = [], []
    for text in filters:
        match = _DEVICE_FILTER.match(text)
        if not match:
            problems.append(
                f".device-filter: {text!r} is not like '0x20B010DE' (device id, then 10DE)"
            )
            continue
        model = catalog.model_for_pci_device_id(int(match.group(1), 16))
        if model is None:
            problems.append(f".device-filter: {text!r} is not a MIG-capable GPU in the catalog")
        elif model not in models:
            models.append(model)
    return models, problems


def _layout_problems(counts: Mapping[str, Any], models: list[str] | None) -> list[str]:
    """The layout must fit every filtered model; without a filter, at least one model."""
    if models is not None:
        return [
            f".mig-devices: on {model}: {result.reason}"
            for model in models
            if not (result := _fit(model, counts)).ok
        ]
    if any(_fit(model, counts).ok for model in catalog.mig_capable_models()):
        return []
    return [".mig-devices: fits no MIG-capable GPU in the catalog"]


def _fit(model: str, counts: Mapping[str, Any]) -> layout.LayoutResult:
    """validate_layout, also accepting the names earlier boards of the model report (a
    config written for them names 7g.189gb where today's GB200 says 7g.186gb)."""
    current, problem = catalog.current_names(model, counts)
    if problem:
        return layout.LayoutResult(ok=False, reason=problem)
    result = layout.validate_layout(model, current)
    renamed = [f"{name} is {new}" for name, new in zip(counts, current, strict=True) if name != new]
    if result.ok or not renamed:
        return result
    return layout.LayoutResult(ok=False, reason=f"{result.reason} ({', '.join(renamed)} today)")


def _raise_if_invalid(config: Mapping[str, Any]) -> None:
    problems = validate_mig_parted_config(config)
    if problems:
        raise ValueError("invalid mig-parted config:\n" + "\n".join(problems))


def to_yaml(config: Mapping[str, Any]) -> str:
    """The config as mig-parted reads it; raises ValueError when it is invalid."""
    _raise_if_invalid(config)
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)


def configs_of(config_map: Mapping[str, Any] | None) -> dict[str, list]:
    """The configs a ConfigMap read from a cluster holds, by name; one that is not a valid
    mig-parted config (anyone who may edit the ConfigMap writes it) is left out."""
    data = (config_map or {}).get("data") or {}
    try:
        config = yaml.safe_load(data.get(CONFIG_MAP_KEY) or "")
    except yaml.YAMLError:
        return {}
    configs = config.get("mig-configs") if isinstance(config, Mapping) else None
    if not isinstance(configs, Mapping):
        return {}
    return {
        name: entries
        for name, entries in configs.items()
        if not validate_mig_parted_config({"version": VERSION, "mig-configs": {name: entries}})
    }


def config_map(name: str, namespace: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A ConfigMap manifest holding the config under `config.yaml`, for mig-manager."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {CONFIG_MAP_KEY: to_yaml(config)},
    }
