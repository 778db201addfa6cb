"""NVIDIA's own default mig-parted config is the yardstick of the MIG catalog: every GPU and
profile in it must be known, with the same maxima, and it must validate with no problems.

The file is vendored unmodified (see its header for the source and commit) in data/.
"""

from pathlib import Path

import pytest
import yaml

from profiles.mig import catalog
from profiles.mig.migparted import validate_mig_parted_config

DEFAULT_CONFIG = Path(__file__).parent / "data" / "mig-parted-config-default.yaml"
SHIPPED_FOR_ALL = ("all-disabled", "all-enabled")


@pytest.fixture(scope="module")
def configs() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())["mig-configs"]


def entries(configs: dict):
    """(config name, entry, models its device filter selects or None) for every entry."""
    for name, items in configs.items():
        for item in items:
            value = item.get("device-filter")
            if value is None:
                yield name, item, None
                continue
            filters = [value] if isinstance(value, str) else value
            yield name, item, [catalog.model_for_pci_device_id(int(f, 16)) for f in filters]


def test_nvidias_default_config_validates_with_no_problems():
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert validate_mig_parted_config(config) == []


@pytest.mark.parametrize(
    ("device_filter", "model"),
    [  # as the file's comments name them
        ("0x233010DE", "H100-80GB"),
        ("0x233110DE", "H100-80GB"),
        ("0x232210DE", "H800-80GB"),
        ("0x232410DE", "H800-80GB"),
        ("0x20B210DE", "A100-80GB"),
        ("0x20B510DE", "A100-80GB"),
        ("0x20F310DE", "A800-80GB"),
        ("0x20F510DE", "A800-80GB"),
        ("0x20B010DE", "A100-40GB"),
        ("0x20B110DE", "A100-40GB"),
        ("0x20F110DE", "A100-40GB"),
        ("0x20F610DE", "A800-40GB"),
        ("0x20B710DE", "A30"),
        ("0x232110DE", "H100-NVL"),
        ("0x233A10DE", "H800-NVL"),
        ("0x233510DE", "H200"),
        ("0x233B10DE", "H200"),
        ("0x234210DE", "GH200-96GB"),
        ("0x234810DE", "GH200-144GB"),
        ("0x233D10DE", "H100-96GB"),
        ("0x20B610DE", "PG506-96GB"),
        ("0x232910DE", "H20"),
        ("0x290110DE", "B200"),
        ("0x294110DE", "GB200"),
        ("0x2BB510DE", "RTX-PRO-6000"),
    ],
)
def test_its_device_filters_are_the_gpus_its_comments_name(device_filter, model):
    assert catalog.model_for_pci_device_id(int(device_filter, 16)) == model


def test_it_filters_on_exactly_the_gpus_of_the_catalog(configs):
    filtered = {model for _, _, models in entries(configs) if models for model in models}
    assert filtered == set(catalog.mig_capable_models())


def test_every_profile_it_names_is_in_the_catalog(configs):
    named = {profile for _, item, _ in entries(configs) for profile in item.get("mig-devices", {})}
    known = {
        name
        for model in catalog.mig_capable_models()
        for name in (
            *(p.name for p in catalog.geometry(model).profiles),
            *catalog.geometry(model).former_names,
        )
    }
    assert named - known == set()
    assert len(named) == 65


def test_its_all_profile_configs_use_the_catalogs_maxima(configs):
    """`all-<profile>` fills a GPU with one profile: its count is the catalog's maximum for
    that profile on every GPU the entry filters on, or without a filter on some GPU."""
    for name, item, models in entries(configs):
        if name in (*SHIPPED_FOR_ALL, "all-balanced"):
            continue
        ((profile_name, count),) = item["mig-devices"].items()
        maxima = set()
        for model in models or catalog.mig_capable_models():
            (current,), _ = catalog.current_names(model, {profile_name: count})
            known = {p.name: p.max_count for p in catalog.geometry(model).profiles}
            if current in known:
                maxima.add(known[current])
            else:
                assert models is None, f"{name}: {model} has no {profile_name}"
        assert count in maxima if models is None else maxima == {count}, name


def test_its_all_balanced_is_the_catalogs_for_every_gpu_it_names(configs):
    balanced = [(item, models) for name, item, models in entries(configs) if name == "all-balanced"]
    assert all(models for _, models in balanced)
    for item, models in balanced:
        for model in models:
            current, problem = catalog.current_names(model, item["mig-devices"])
            assert not problem
            assert catalog.named_layouts(model)["all-balanced"].mig_devices == current, model
