import copy

import kubernetes_validate
import pytest
import yaml

from profiles.mig import catalog
from profiles.mig.migparted import (
    config_map,
    default_config,
    device_filter,
    entry,
    to_yaml,
    validate_mig_parted_config,
)


def test_device_filters_are_device_id_then_vendor():
    assert device_filter("A100-40GB") == ["0x20B010DE", "0x20B110DE", "0x20F110DE"]
    assert device_filter("H200") == ["0x233510DE", "0x233B10DE"]


def test_the_default_config_is_valid_and_survives_yaml():
    config = default_config()
    assert validate_mig_parted_config(config) == []
    assert yaml.safe_load(to_yaml(config)) == config
    assert to_yaml(config).startswith("version: v1\nmig-configs:\n")


def test_the_default_config_holds_the_shipped_names():
    configs = default_config()["mig-configs"]
    assert configs["all-disabled"] == [{"devices": "all", "mig-enabled": False}]
    assert configs["all-enabled"] == [{"devices": "all", "mig-enabled": True, "mig-devices": {}}]
    for model in catalog.mig_capable_models():
        assert set(catalog.named_layouts(model)) <= set(configs)
    assert configs["all-1g.5gb.me"] == [
        {
            "device-filter": device_filter("A100-40GB") + device_filter("A800-40GB"),
            "devices": "all",
            "mig-enabled": True,
            "mig-devices": {"1g.5gb+me": 1},
        }
    ]


def test_a_shared_name_gets_one_entry_per_layout():
    entries = default_config(["A100-40GB", "A100-80GB", "H100-80GB"])["mig-configs"]["all-1g.10gb"]
    assert [(e["device-filter"], e["mig-devices"]) for e in entries] == [
        (device_filter("A100-40GB"), {"1g.10gb": 4}),
        (device_filter("A100-80GB") + device_filter("H100-80GB"), {"1g.10gb": 7}),
    ]


def test_custom_entries_are_built_and_validated():
    config = {
        "version": "v1",
        "mig-configs": {
            "portal-node-7": [
                entry(None, devices=[0, 1]),
                entry({"3g.20gb": 2}, ["A100-40GB"], devices=[2]),
                entry({"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}, devices=[3]),
            ]
        },
    }
    assert validate_mig_parted_config(config) == []


def valid() -> dict:
    return {
        "version": "v1",
        "mig-configs": {
            "custom": [
                {
                    "device-filter": "0x20B010DE",
                    "devices": [0],
                    "mig-enabled": True,
                    "mig-devices": {"1g.5gb": 7},
                }
            ]
        },
    }


def edited(path: list, value) -> dict:
    """valid() with the value at `path` replaced, or removed when value is ...."""
    config = copy.deepcopy(valid())
    target = config
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return config


ENTRY = ["mig-configs", "custom", 0]


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("not a mapping", "config: must be a mapping"),
        (edited(["extra"], 1), "extra: unknown field"),
        (edited(["version"], ...), "version: must be 'v1', not None"),
        (edited(["version"], "v2"), "version: must be 'v1', not 'v2'"),
        (edited(["mig-configs"], {}), "mig-configs: must map at least one config name"),
        (edited(["mig-configs", "custom"], []), "mig-configs.custom: must be a non-empty list"),
        (edited([*ENTRY, "mig-devcies"], {}), "mig-configs.custom[0].mig-devcies: unknown field"),
        (edited([*ENTRY, "devices"], ...), "mig-configs.custom[0].devices: required"),
        (edited([*ENTRY, "mig-enabled"], ...), "mig-configs.custom[0].mig-enabled: required"),
        (edited([*ENTRY, "devices"], "some"), "mig-configs.custom[0].devices: must be 'all'"),
        (edited([*ENTRY, "devices"], [-1]), "mig-configs.custom[0].devices: must be 'all'"),
        (edited([*ENTRY, "devices"], [0, 0]), "mig-configs.custom[0].devices: must be 'all'"),
        (edited([*ENTRY, "devices"], [True]), "mig-configs.custom[0].devices: must be 'all'"),
        (edited([*ENTRY, "mig-enabled"], "yes"), "mig-configs.custom[0].mig-enabled: must be"),
        (edited([*ENTRY, "mig-devices"], ...), "mig-configs.custom[0].mig-devices: required"),
        (edited([*ENTRY, "mig-devices"], [1]), "mig-configs.custom[0].mig-devices: must map"),
        (
            edited([*ENTRY, "mig-devices", "1g.5gb"], -1),
            "mig-configs.custom[0].mig-devices: need profile name: count ≥ 0",
        ),
        (
            edited([*ENTRY, "mig-enabled"], False),
            "mig-configs.custom[0].mig-devices: must be absent or empty",
        ),
        (edited([*ENTRY, "device-filter"], "20B0"), "mig-configs.custom[0].device-filter: '20B0'"),
        (
            edited([*ENTRY, "device-filter"], "0x123410DE"),
            "mig-configs.custom[0].device-filter: '0x123410DE' is not a MIG-capable GPU",
        ),
        (edited([*ENTRY, "device-filter"], 7), "mig-configs.custom[0].device-filter: must be"),
        (
            edited([*ENTRY, "mig-devices"], {"1g.5gb": 8}),
            "mig-configs.custom[0].mig-devices: on A100-40GB: 8×1g.5gb exceeds the maximum",
        ),
        (
            edited([*ENTRY, "mig-devices"], {"1g.10gb": 7}),
            "mig-configs.custom[0].mig-devices: on A100-40GB: 7×1g.10gb exceeds the maximum",
        ),
        (
            edited([*ENTRY, "device-filter"], ...),
            None,  # without a filter, 7×1g.5gb only has to fit some GPU: valid
        ),
        (
            edited([*ENTRY, "mig-devices"], {"3g.20gb": 2, "1g.5gb": 1}),
            "mig-configs.custom[0].mig-devices: on A100-40GB: 2×3g.20gb use all 8",
        ),
    ],
)
def test_invalid_configs_are_rejected_with_a_specific_problem(config, problem):
    problems = validate_mig_parted_config(config)
    if problem is None:
        assert problems == []
    else:
        assert any(p.startswith(problem) for p in problems), problems


def test_without_a_filter_the_layout_must_fit_some_gpu():
    config = edited([*ENTRY, "device-filter"], ...)
    config["mig-configs"]["custom"][0]["mig-devices"] = {"1g.5gb": 2, "1g.10gb": 7}
    assert validate_mig_parted_config(config) == [
        "mig-configs.custom[0].mig-devices: fits no MIG-capable GPU in the catalog"
    ]


def test_the_filter_may_be_a_list_and_every_listed_model_must_fit():
    config = edited([*ENTRY, "device-filter"], ["0x20B010DE", "0x20B210DE"])
    config["mig-configs"]["custom"][0]["mig-devices"] = {"1g.10gb": 4}
    assert validate_mig_parted_config(config) == []
    config["mig-configs"]["custom"][0]["mig-devices"] = {"1g.10gb": 5}
    assert validate_mig_parted_config(config) == [
        "mig-configs.custom[0].mig-devices: on A100-40GB: 5×1g.10gb exceeds the maximum of 4 "
        "for 1g.10gb on A100-40GB"
    ]


def test_invalid_configs_are_not_written():
    with pytest.raises(ValueError, match="version"):
        to_yaml(edited(["version"], "v2"))


def test_the_config_map_passes_the_kubernetes_schema():
    manifest = config_map("custom-mig-parted-config", "gpu-operator", default_config())
    kubernetes_validate.validate(manifest, "1.29.0", strict=True)
    assert manifest["data"]["config.yaml"] == to_yaml(default_config())


def test_the_schema_check_would_catch_a_broken_manifest():
    manifest = config_map("custom-mig-parted-config", "gpu-operator", valid())
    manifest["data"]["config.yaml"] = {"not": "a string"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(manifest, "1.29.0", strict=True)


def test_earlier_gb200_names_validate_but_may_not_be_mixed_with_the_later_ones():
    config = edited([*ENTRY, "device-filter"], "0x294110DE")
    config["mig-configs"]["custom"][0]["mig-devices"] = {"1g.24gb": 2, "2g.47gb": 1, "3g.95gb": 1}
    assert validate_mig_parted_config(config) == []
    config["mig-configs"]["custom"][0]["mig-devices"] = {"1g.24gb": 2, "3g.93gb": 1}
    assert validate_mig_parted_config(config) == [
        "mig-configs.custom[0].mig-devices: on GB200: 1g.24gb and 3g.93gb are names from "
        "different GB200 boards (the earlier and the later names of the same profiles); "
        "one GPU reports only one set"
    ]
    config["mig-configs"]["custom"][0]["mig-devices"] = {"7g.189gb": 2}
    assert validate_mig_parted_config(config) == [
        "mig-configs.custom[0].mig-devices: on GB200: 2×7g.186gb exceeds the maximum of 1 "
        "for 7g.186gb on GB200 (7g.189gb is 7g.186gb today)"
    ]


def test_rtx_pro_6000_configs_are_checked_against_its_own_profiles():
    config = edited([*ENTRY, "device-filter"], "0x2BB510DE")
    config["mig-configs"]["custom"][0]["mig-devices"] = {"1g.24gb+me.all": 1, "1g.24gb-me": 3}
    assert validate_mig_parted_config(config) == []
    config["mig-configs"]["custom"][0]["mig-devices"] = {"2g.48gb": 2, "1g.24gb": 1}
    assert validate_mig_parted_config(config) == [
        "mig-configs.custom[0].mig-devices: on RTX-PRO-6000: 2×2g.48gb use all 4 memory "
        "slices; no room for 1g.24gb"
    ]
