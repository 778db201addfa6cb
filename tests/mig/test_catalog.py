import pytest

from profiles import catalog as portal_catalog
from profiles.mig import catalog
from profiles.mig.layout import validate_layout

MODELS = [
    "A30",
    "A100-40GB",
    "A800-40GB",
    "A100-80GB",
    "A800-80GB",
    "PG506-96GB",
    "H100-80GB",
    "H800-80GB",
    "H100-NVL",
    "H800-NVL",
    "H100-96GB",
    "H20",
    "H200",
    "GH200-96GB",
    "GH200-144GB",
    "B200",
    "GB200",
    "RTX-PRO-6000",
]
EIGHT_SLICE_MODELS = MODELS[1:-1]


def test_it_knows_exactly_the_shared_model_codes():
    assert catalog.mig_capable_models() == MODELS


@pytest.mark.parametrize(
    ("pci_device_id", "model"),
    [
        (0x20B7, "A30"),
        (0x20B0, "A100-40GB"),
        (0x20B1, "A100-40GB"),
        (0x20F1, "A100-40GB"),
        (0x20B2, "A100-80GB"),
        (0x20B5, "A100-80GB"),
        (0x2330, "H100-80GB"),
        (0x2331, "H100-80GB"),
        (0x2321, "H100-NVL"),
        (0x2335, "H200"),
        (0x233B, "H200"),
        (0x2342, "GH200-96GB"),
        (0x2348, "GH200-144GB"),
        (0x2901, "B200"),
        (0x20F6, "A800-40GB"),
        (0x20F3, "A800-80GB"),
        (0x20F5, "A800-80GB"),
        (0x20B6, "PG506-96GB"),
        (0x2322, "H800-80GB"),
        (0x2324, "H800-80GB"),
        (0x233A, "H800-NVL"),
        (0x233D, "H100-96GB"),
        (0x2329, "H20"),
        (0x2941, "GB200"),
        (0x2BB5, "RTX-PRO-6000"),
        (0x20B010DE, "A100-40GB"),  # NVML's pciDeviceId: device << 16 | vendor
    ],
)
def test_it_maps_pci_device_ids_to_models(pci_device_id, model):
    assert catalog.model_for_pci_device_id(pci_device_id) == model


def test_it_returns_none_for_unknown_pci_ids_and_other_vendors():
    assert catalog.model_for_pci_device_id(0x1234) is None
    assert catalog.model_for_pci_device_id(0x20B01002) is None  # vendor is not NVIDIA


# (name, NVML enum, profile ID, compute slices, memory slices, max, starts) per the reference
A100_40GB_ROWS = [
    ("1g.5gb", 0x0, 19, 1, 1, 7, (0, 1, 2, 3, 4, 5, 6)),
    ("1g.5gb+me", 0x7, 20, 1, 1, 1, (0, 1, 2, 3, 4, 5, 6)),
    ("1g.10gb", 0x9, 15, 1, 2, 4, (0, 2, 4, 6)),
    ("2g.10gb", 0x1, 14, 2, 2, 3, (0, 2, 4)),
    ("3g.20gb", 0x2, 9, 3, 4, 2, (0, 4)),
    ("4g.20gb", 0x3, 5, 4, 4, 1, (0,)),
    ("7g.40gb", 0x4, 0, 7, 8, 1, (0,)),
]


def _row(p: catalog.MigProfile) -> tuple:
    return (
        p.name,
        p.nvml_profile,
        p.profile_id,
        p.compute_slices,
        p.memory_slices,
        p.max_count,
        p.starts,
    )


def test_a100_40gb_profiles_match_the_reference():
    geo = catalog.geometry("A100-40GB")
    assert (geo.memory_slices, geo.compute_slices) == (8, 7)
    assert [_row(p) for p in geo.profiles] == A100_40GB_ROWS


def test_a30_profiles_match_the_reference():
    geo = catalog.geometry("A30")
    assert (geo.memory_slices, geo.compute_slices) == (4, 4)
    rows = [(p.name, p.profile_id, p.memory_slices, p.max_count, p.starts) for p in geo.profiles]
    assert rows == [
        ("1g.6gb", 14, 1, 4, (0, 1, 2, 3)),
        ("1g.6gb+me", 21, 1, 1, (0, 1, 2, 3)),
        ("2g.12gb", 5, 2, 2, (0, 2)),
        ("2g.12gb+me", 6, 2, 1, (0, 2)),
        ("4g.24gb", 0, 4, 1, (0,)),
    ]


@pytest.mark.parametrize(
    ("model", "names"),
    [
        ("A100-80GB", "1g.10gb 1g.10gb+me 1g.20gb 2g.20gb 3g.40gb 4g.40gb 7g.80gb"),
        ("H100-80GB", "1g.10gb 1g.10gb+me 1g.20gb 2g.20gb 3g.40gb 4g.40gb 7g.80gb"),
        ("H100-NVL", "1g.12gb 1g.12gb+me 1g.24gb 2g.24gb 3g.47gb 4g.47gb 7g.94gb"),
        ("H200", "1g.18gb 1g.18gb+me 1g.35gb 2g.35gb 3g.71gb 4g.71gb 7g.141gb"),
        ("GH200-96GB", "1g.12gb 1g.12gb+me 1g.24gb 2g.24gb 3g.48gb 4g.48gb 7g.96gb"),
        ("GH200-144GB", "1g.18gb 1g.18gb+me 1g.36gb 2g.36gb 3g.72gb 4g.72gb 7g.144gb"),
        ("B200", "1g.23gb 1g.23gb+me 1g.45gb 2g.45gb 3g.90gb 4g.90gb 7g.180gb"),
        ("A800-40GB", "1g.5gb 1g.5gb+me 1g.10gb 2g.10gb 3g.20gb 4g.20gb 7g.40gb"),
        ("A800-80GB", "1g.10gb 1g.10gb+me 1g.20gb 2g.20gb 3g.40gb 4g.40gb 7g.80gb"),
        ("PG506-96GB", "1g.12gb 1g.12gb+me 1g.24gb 2g.24gb 3g.48gb 4g.48gb 7g.96gb"),
        ("H800-80GB", "1g.10gb 1g.10gb+me 1g.20gb 2g.20gb 3g.40gb 4g.40gb 7g.80gb"),
        ("H800-NVL", "1g.12gb 1g.12gb+me 1g.24gb 2g.24gb 3g.47gb 4g.47gb 7g.94gb"),
        ("H100-96GB", "1g.12gb 1g.12gb+me 1g.24gb 2g.24gb 3g.48gb 4g.48gb 7g.96gb"),
        ("H20", "1g.12gb 1g.12gb+me 1g.24gb 2g.24gb 3g.48gb 4g.48gb 7g.96gb"),
        ("GB200", "1g.23gb 1g.23gb+me 1g.47gb 2g.47gb 3g.93gb 4g.93gb 7g.186gb"),
    ],
)
def test_eight_slice_models_share_the_a100_rows_under_their_own_names(model, names):
    rows = [_row(p) for p in catalog.geometry(model).profiles]
    expected = [(name, *row[1:]) for name, row in zip(names.split(), A100_40GB_ROWS, strict=True)]
    assert rows == expected


def test_the_same_name_means_different_profiles_on_different_gpus():
    small = catalog.profile("A100-40GB", "1g.10gb")
    big = catalog.profile("A100-80GB", "1g.10gb")
    assert (small.memory_slices, small.max_count, small.profile_id) == (2, 4, 15)
    assert (big.memory_slices, big.max_count, big.profile_id) == (1, 7, 19)


@pytest.mark.parametrize(
    ("model", "name", "gib"),
    [
        ("A100-40GB", "1g.5gb", 4.75),
        ("A100-40GB", "2g.10gb", 9.75),
        ("A100-40GB", "3g.20gb", 19.62),
        ("A100-40GB", "4g.20gb", 19.62),
        ("A100-40GB", "7g.40gb", 39.50),
        ("H100-80GB", "1g.10gb", 9.75),
        ("H100-80GB", "2g.20gb", 19.62),
        ("H100-80GB", "3g.40gb", 39.50),
        ("H100-80GB", "7g.80gb", 79.25),
        ("H200", "1g.18gb", 16.00),
        ("H200", "3g.71gb", 69.75),
        ("H200", "7g.141gb", 140.00),
    ],
)
def test_captured_usable_memory_is_exact(model, name, gib):
    mig_profile = catalog.profile(model, name)
    assert mig_profile.usable_memory_gib == gib
    assert not mig_profile.memory_is_approximate


def test_uncaptured_usable_memory_is_marked_approximate_and_plausible():
    for model in MODELS:
        for p in catalog.geometry(model).profiles:
            nominal = int(p.name.split(".")[1].split("gb")[0])
            assert 0.8 * nominal < p.usable_memory_gib <= nominal, (model, p.name)
    assert catalog.profile("B200", "7g.180gb").memory_is_approximate
    assert catalog.profile("H200", "1g.18gb+me").usable_memory_gib == 16.00


def test_unknown_models_and_profiles_raise_clear_key_errors():
    with pytest.raises(KeyError, match="unknown MIG GPU model 'T4'"):
        catalog.geometry("T4")
    with pytest.raises(KeyError, match=r"A100-80GB has no MIG profile '1g\.5gb'"):
        catalog.profile("A100-80GB", "1g.5gb")


def test_placement_sources_follow_the_reference():
    sources = {m: catalog.geometry(m).placements_source for m in MODELS}
    assert sources["A100-40GB"] == sources["H100-80GB"] == catalog.CONFIRMED
    assert sources["H200"] == catalog.CONFIRMED  # read off a real H200 (test_nvml_capture.py)
    assert sources["B200"] == sources["GB200"] == sources["RTX-PRO-6000"] == catalog.UNVERIFIED
    for same_die in ("A800-40GB", "A800-80GB", "PG506-96GB", "H800-80GB", "H800-NVL", "H20"):
        assert sources[same_die] == catalog.DERIVED


def test_rtx_pro_6000_has_four_memory_slices_and_its_own_profiles():
    geo = catalog.geometry("RTX-PRO-6000")
    assert (geo.memory_slices, geo.compute_slices, geo.pci_device_ids) == (4, 4, (0x2BB5,))
    rows = [
        (p.name, p.nvml_profile, p.profile_id, p.memory_slices, p.max_count, p.starts, p.source)
        for p in geo.profiles
    ]
    one, two, four = (0, 1, 2, 3), (0, 2), (0,)
    confirmed, derived = catalog.CONFIRMED, catalog.DERIVED
    assert rows == [
        ("1g.24gb", 0x0, 14, 1, 4, one, confirmed),
        ("1g.24gb+me", 0x7, 21, 1, 1, one, confirmed),
        ("1g.24gb+gfx", 0xA, 47, 1, 4, one, confirmed),
        ("1g.24gb+me.all", 0xF, 65, 1, 1, one, confirmed),
        ("1g.24gb-me", 0xD, None, 1, 4, one, derived),
        ("2g.48gb", 0x1, 5, 2, 2, two, derived),
        ("2g.48gb+gfx", 0xB, None, 2, 2, two, derived),
        ("2g.48gb+me.all", 0x10, None, 2, 1, two, derived),
        ("2g.48gb-me", 0xE, None, 2, 2, two, derived),
        ("4g.96gb", 0x3, 0, 4, 1, four, derived),
        ("4g.96gb+gfx", 0xC, None, 4, 1, four, derived),
    ]
    assert catalog.named_layouts("RTX-PRO-6000")["all-balanced"].mig_devices == {
        "1g.24gb": 2,
        "2g.48gb": 1,
    }


def test_me_and_me_all_share_the_single_media_extensions():
    assert catalog.profile("RTX-PRO-6000", "1g.24gb+me.all").media_extensions
    assert not catalog.profile("RTX-PRO-6000", "1g.24gb-me").media_extensions
    assert validate_layout("RTX-PRO-6000", {"1g.24gb+me.all": 1, "1g.24gb-me": 3}).ok
    both = validate_layout("RTX-PRO-6000", {"1g.24gb+me": 1, "2g.48gb+me.all": 1})
    assert not both.ok
    assert "at most one +me profile" in both.reason


UNVERIFIED_PROFILES = {
    ("PG506-96GB", "1g.12gb+me"),
    ("PG506-96GB", "1g.24gb"),
    ("H100-96GB", "1g.12gb+me"),
    ("H100-96GB", "1g.24gb"),
    ("H20", "1g.12gb+me"),
    ("H20", "1g.24gb"),
    ("H20", "4g.48gb"),
    ("H20", "7g.96gb"),
}


def test_every_profile_says_how_it_is_known():
    sources = {
        (model, p.name): p.source for model in MODELS for p in catalog.geometry(model).profiles
    }
    assert set(sources.values()) == {catalog.CONFIRMED, catalog.DERIVED, catalog.UNVERIFIED}
    assert {key for key, source in sources.items() if source == catalog.UNVERIFIED} == (
        UNVERIFIED_PROFILES
    )


def test_what_is_not_published_is_said_not_guessed_silently():
    for model in MODELS:
        geo = catalog.geometry(model)
        for p in geo.profiles:
            if p.profile_id is None:  # an unpublished ID is never filled in
                assert p.source != catalog.CONFIRMED, (model, p.name)
                assert "not published" in geo.note, model
        unknown = geo.placements_source == catalog.UNVERIFIED or any(
            p.source == catalog.UNVERIFIED for p in geo.profiles
        )
        if unknown:
            assert "[unverified]" in geo.note, model
    assert [p.name for p in catalog.geometry("RTX-PRO-6000").profiles if p.profile_id is None] == [
        "1g.24gb-me",
        "2g.48gb+gfx",
        "2g.48gb+me.all",
        "2g.48gb-me",
        "4g.96gb+gfx",
    ]


def test_earlier_gb200_boards_use_other_names_for_the_same_profiles():
    geo = catalog.geometry("GB200")
    assert geo.former_names["7g.189gb"] == "7g.186gb"
    early = {"1g.24gb": 2, "2g.47gb": 1, "3g.95gb": 1}
    assert catalog.current_names("GB200", early) == (
        {"1g.23gb": 2, "2g.47gb": 1, "3g.93gb": 1},
        "",
    )
    _, problem = catalog.current_names("GB200", {"1g.24gb": 1, "3g.93gb": 1})
    assert "names from different GB200 boards" in problem
    # Only GB200 renamed its profiles: H100 NVL's own 1g.24gb stays what it is.
    assert catalog.current_names("H100-NVL", {"1g.24gb": 4}) == ({"1g.24gb": 4}, "")


def test_every_mig_model_is_a_mig_capable_gpu_of_the_portal_catalog():
    """Forms offer GPU models from profiles.catalog and MIG profiles from this catalog."""
    portal = {code for code, gpu in portal_catalog.GPU_MODELS.items() if gpu.mig_capable}
    assert portal == set(MODELS)
    for model in MODELS:
        whole = catalog.geometry(model).profiles[-1]
        nominal = int(whole.name.split(".")[1].split("gb")[0])
        assert portal_catalog.GPU_MODELS[model].memory_gb == nominal, model


def test_node_labels_are_the_drivers_device_names():
    for pci, (model, name) in catalog.PCI_DEVICES.items():
        assert pci in catalog.geometry(model).pci_device_ids
        if name.startswith("NVIDIA "):
            labels = portal_catalog.GPU_MODELS[model].product_labels
            assert name.replace(" ", "-") in labels, (hex(pci), name)
            assert portal_catalog.gpu_model_for_product_label(name.replace(" ", "-")).code == model


@pytest.mark.parametrize(
    ("name", "resource", "config"),
    [
        ("1g.5gb", "nvidia.com/mig-1g.5gb", "all-1g.5gb"),
        ("1g.5gb+me", "nvidia.com/mig-1g.5gb.me", "all-1g.5gb.me"),
        ("3g.20gb", "nvidia.com/mig-3g.20gb", "all-3g.20gb"),
    ],
)
def test_names_for_kubernetes_and_mig_parted(name, resource, config):
    assert catalog.k8s_resource_name(name) == resource
    assert catalog.mig_parted_name(name) == config


def test_named_layouts_for_a100_40gb():
    layouts = catalog.named_layouts("A100-40GB")
    assert not layouts["all-disabled"].mig_enabled
    assert layouts["all-enabled"].mig_enabled
    assert layouts["all-enabled"].mig_devices == {}
    assert layouts["all-balanced"].mig_devices == {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}
    assert layouts["all-1g.5gb"].mig_devices == {"1g.5gb": 7}
    assert layouts["all-1g.5gb.me"].mig_devices == {"1g.5gb+me": 1}
    assert layouts["all-1g.10gb"].mig_devices == {"1g.10gb": 4}
    assert layouts["all-3g.20gb"].mig_devices == {"3g.20gb": 2}
    assert layouts["all-7g.40gb"].mig_devices == {"7g.40gb": 1}


def test_named_layouts_follow_each_model():
    assert catalog.named_layouts("A30")["all-balanced"].mig_devices == {
        "1g.6gb": 2,
        "2g.12gb": 1,
    }
    assert catalog.named_layouts("A100-80GB")["all-1g.10gb"].mig_devices == {"1g.10gb": 7}
    assert catalog.named_layouts("H200")["all-balanced"].mig_devices == {
        "1g.18gb": 2,
        "2g.35gb": 1,
        "3g.71gb": 1,
    }


@pytest.mark.parametrize("model", MODELS)
def test_every_named_layout_is_valid(model):
    for layout in catalog.named_layouts(model).values():
        assert validate_layout(model, layout.mig_devices).ok, layout.name
