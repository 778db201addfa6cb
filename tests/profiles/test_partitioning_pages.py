"""Partitioning strategy pages: CRUD, live feedback, fleet slice counts, the layouts page,
and the NVML section of the local infrastructure page."""

import re
from http import HTTPStatus

import pynvml
import pytest
from django.urls import reverse

from portal.models import AuditEntry
from profiles import partitioning
from profiles.choices import PartitioningMode
from profiles.mig import layout
from profiles.models import PartitioningStrategy
from profiles.partitioning_views import LAYOUTS_PER_PAGE
from tests.mig.fake_nvml import FakeNvml

pytestmark = pytest.mark.django_db


def form_data(infrastructure, model="A100-40GB", mode="named", **fields) -> dict:
    data = {
        "infrastructure": str(infrastructure.pk),
        "gpu_model": model,
        "mode": mode,
        "layout_name": "",
        "nodes": "",
        "config_map_name": "custom-mig-parted-config",
        "config_map_namespace": "gpu-operator",
    }
    data.update({key: str(value) for key, value in fields.items()})
    return data


def add(client, data):
    return client.post(reverse("profiles:partitioningstrategy_add"), data)


def preview(client, data, pk=None):
    args = [pk] if pk else []
    response = client.post(reverse("profiles:partitioning_preview", args=args), data)
    assert response.status_code == HTTPStatus.OK
    return response.content.decode()


# --- create, edit, delete ----------------------------------------------------------------


def test_it_creates_a_named_layout_and_audits_it(admin_client, aws_infrastructure):
    response = add(admin_client, form_data(aws_infrastructure, layout_name="all-balanced"))
    assert response.status_code == HTTPStatus.FOUND, response.content.decode()[:2000]
    strategy = PartitioningStrategy.objects.get()
    assert strategy.per_gpu_counts() == {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}
    assert strategy.config_name() == "all-balanced"
    entry = AuditEntry.objects.get(object_id=str(strategy.pk), action="created")
    assert entry.after["layout_name"] == "all-balanced"


def test_it_creates_a_custom_mix(admin_client, aws_infrastructure):
    data = form_data(aws_infrastructure, mode="custom", **{"count_4g.20gb": 1, "count_3g.20gb": 1})
    assert add(admin_client, data).status_code == HTTPStatus.FOUND
    strategy = PartitioningStrategy.objects.get()
    assert strategy.custom_counts == {"3g.20gb": 1, "4g.20gb": 1}
    assert strategy.layout_name == ""
    assert strategy.config_name().startswith("portal-a100-40gb-")


@pytest.mark.parametrize(
    ("counts", "reason"),
    [
        ({"count_1g.5gb": 8}, "8×1g.5gb exceeds the maximum of 7 for 1g.5gb on A100-40GB"),
        ({"count_4g.20gb": 2}, "exceeds the maximum of 1"),
        (
            {"count_3g.20gb": 2, "count_1g.5gb": 1},
            "2×3g.20gb use all 8 memory slices; no room for 1g.5gb",
        ),
        ({"count_7g.40gb": 1, "count_1g.5gb": 1}, "no room for 1g.5gb"),
        ({}, "a custom mix needs at least one instance"),
    ],
)
def test_an_invalid_custom_mix_is_rejected_with_the_reason(
    admin_client, aws_infrastructure, counts, reason
):
    response = add(admin_client, form_data(aws_infrastructure, mode="custom", **counts))
    page = response.content.decode()
    assert response.status_code == HTTPStatus.OK
    assert reason in page
    assert 'class="error"' in page  # next to the field, not only at the top
    assert not PartitioningStrategy.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"layout_name": ""}, "Choose one of the named layouts."),
        ({"layout_name": "all-1g.10gb.me"}, "Select a valid choice"),  # an A100-80GB name
        ({"gpu_model": "L4"}, "Select a valid choice"),
        ({"gpu_model": "A30", "layout_name": "all-balanced"}, "AWS test has no A30 GPUs"),
        ({"layout_name": "all-balanced", "nodes": "Bad_Node"}, "Not node names"),
        ({"layout_name": "all-balanced", "config_map_namespace": "GPU"}, "A namespace"),
        ({"mode": "sideways"}, "Select a valid choice"),
    ],
)
def test_bad_input_is_a_field_error_never_a_500(admin_client, aws_infrastructure, fields, message):
    response = add(admin_client, form_data(aws_infrastructure, **fields))
    assert response.status_code == HTTPStatus.OK
    assert message in response.content.decode()


def test_one_partitioning_per_infrastructure_and_model(
    admin_client, aws_infrastructure, partitioning_factory
):
    partitioning_factory(aws_infrastructure)
    response = add(admin_client, form_data(aws_infrastructure, layout_name="all-3g.20gb"))
    assert response.status_code == HTTPStatus.OK
    assert "already has a partitioning for this GPU model" in response.content.decode()


def test_data_center_nodes_must_be_its_hosts(admin_client, datacenter_infrastructure):
    data = form_data(datacenter_infrastructure, layout_name="all-balanced", nodes="gpu-a\ngpu-z")
    response = add(admin_client, data)
    assert response.status_code == HTTPStatus.OK
    assert "Not hosts of DC: gpu-z." in response.content.decode()


def test_edit_switches_to_whole_gpus_and_is_audited(
    admin_client, aws_infrastructure, partitioning_factory
):
    strategy = partitioning_factory(aws_infrastructure)
    url = reverse("profiles:partitioningstrategy_edit", args=[strategy.pk])
    page = admin_client.get(url).content.decode()
    assert "3g.20gb" in page and 'id="layout-feedback"' in page
    response = admin_client.post(url, form_data(aws_infrastructure, mode="whole"))
    assert response.status_code == HTTPStatus.FOUND
    strategy.refresh_from_db()
    assert strategy.mode == PartitioningMode.WHOLE and strategy.per_gpu_counts() is None
    assert strategy.config_name() == "all-disabled"
    entry = AuditEntry.objects.get(object_id=str(strategy.pk), action="updated")
    assert entry.before["mode"] == "named" and entry.after["mode"] == "whole"


def test_list_detail_and_delete(admin_client, aws_infrastructure, partitioning_factory):
    strategy = partitioning_factory(aws_infrastructure)
    page = admin_client.get(reverse("profiles:partitioningstrategy_list")).content.decode()
    assert "AWS test · A100-40GB" in page and "all-balanced" in page
    detail = admin_client.get(strategy.get_absolute_url()).content.decode()
    assert "mig-configs:" in detail and "device-filter" in detail
    assert detail.count('class="gi ') == 4  # 2×1g.5gb + 2g.10gb + 3g.20gb
    delete = reverse("profiles:partitioningstrategy_delete", args=[strategy.pk])
    assert admin_client.get(delete).status_code == HTTPStatus.OK
    assert admin_client.post(delete).status_code == HTTPStatus.FOUND
    assert not PartitioningStrategy.objects.exists()
    assert AuditEntry.objects.filter(action="deleted").exists()


def test_delete_is_refused_while_compute_profiles_use_its_slices(
    admin_client, aws_infrastructure, partitioning_factory, profile_factory
):
    strategy = partitioning_factory(aws_infrastructure)
    profile = profile_factory(aws_infrastructure, "Sliced")
    profile.resource_groups.update(gpu_model="A100-40GB", gpu_count=1, mig_profile="3g.20gb")
    delete = reverse("profiles:partitioningstrategy_delete", args=[strategy.pk])
    response = admin_client.post(delete)
    assert "Compute profiles ask for MIG slices of A100-40GB here (Sliced)" in (
        response.content.decode()
    )
    assert PartitioningStrategy.objects.exists()


def profile_asking_for(profile_factory, infrastructure, mig_profile: str, name="Sliced"):
    profile = profile_factory(infrastructure, name)
    profile.resource_groups.update(gpu_model="A100-40GB", gpu_count=1, mig_profile=mig_profile)
    return profile


def edit(client, strategy, data):
    return client.post(reverse("profiles:partitioningstrategy_edit", args=[strategy.pk]), data)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mode": "named", "layout_name": "all-1g.5gb"}, "layout_name"),
        ({"mode": "whole"}, "mode"),
        ({"mode": "custom", "count_1g.5gb": 7}, "count_3g.20gb"),
        ({"model": "H100-80GB", "layout_name": "all-3g.40gb"}, "gpu_model"),
    ],
)
def test_an_edit_that_takes_away_slices_compute_profiles_ask_for_is_refused(
    admin_client, aws_infrastructure, partitioning_factory, profile_factory, change, field
):
    """The rule of deleting (`partitioning.slices_in_use`): the profile would stay
    published asking for 3g.20gb slices no GPU of the infrastructure has."""
    strategy = partitioning_factory(aws_infrastructure, layout_name="all-3g.20gb")
    profile_asking_for(profile_factory, aws_infrastructure, "3g.20gb")
    response = edit(admin_client, strategy, form_data(aws_infrastructure, **change))
    assert response.status_code == HTTPStatus.OK
    form = response.context["form"]
    assert form.errors[field] == [
        "Compute profiles ask for MIG slices of A100-40GB here (Sliced) that this would take "
        "away: 3g.20gb. Change them to whole GPUs or to slices it keeps first."
    ]
    strategy.refresh_from_db()
    assert strategy.per_gpu_counts() == {"3g.20gb": 2}


def test_moving_a_partitioning_whose_slices_are_used_to_another_infrastructure_is_refused(
    admin_client, aws_infrastructure, datacenter_infrastructure, partitioning_factory,
    profile_factory,
):  # fmt: skip
    strategy = partitioning_factory(aws_infrastructure, layout_name="all-3g.20gb")
    profile_asking_for(profile_factory, aws_infrastructure, "3g.20gb")
    data = form_data(datacenter_infrastructure, layout_name="all-3g.20gb")
    response = edit(admin_client, strategy, data)
    assert (
        "that this would take away: 3g.20gb" in response.context["form"].errors["infrastructure"][0]
    )
    strategy.refresh_from_db()
    assert strategy.infrastructure == aws_infrastructure


def test_an_edit_that_keeps_the_slices_compute_profiles_ask_for_is_saved(
    admin_client, aws_infrastructure, partitioning_factory, profile_factory
):
    strategy = partitioning_factory(aws_infrastructure, layout_name="all-3g.20gb")
    profile_asking_for(profile_factory, aws_infrastructure, "3g.20gb")
    profile_asking_for(profile_factory, aws_infrastructure, "", name="Whole")
    data = form_data(aws_infrastructure, mode="custom", **{"count_3g.20gb": 1, "count_2g.10gb": 2})
    assert edit(admin_client, strategy, data).status_code == HTTPStatus.FOUND
    strategy.refresh_from_db()
    assert strategy.per_gpu_counts() == {"2g.10gb": 2, "3g.20gb": 1}


def test_an_edit_may_go_ahead_when_a_profile_asks_for_a_slice_that_was_already_gone(
    admin_client, aws_infrastructure, partitioning_factory, profile_factory
):
    """Only what the edit takes away counts: the profile is shown as unavailable
    (`workspaces.offers`) until its resource groups or the partitioning change."""
    strategy = partitioning_factory(aws_infrastructure, layout_name="all-3g.20gb")
    profile_asking_for(profile_factory, aws_infrastructure, "1g.5gb")
    data = form_data(aws_infrastructure, layout_name="all-3g.20gb", nodes="node-a")
    assert edit(admin_client, strategy, data).status_code == HTTPStatus.FOUND


def test_deleting_or_editing_is_refused_by_one_rule(aws_infrastructure, partitioning_factory,
                                                    profile_factory):  # fmt: skip
    """What delete says is what the edit form says with nothing left on offer."""
    strategy = partitioning_factory(aws_infrastructure, layout_name="all-balanced")
    assert partitioning.deletion_refusal(strategy) == ""
    profile_asking_for(profile_factory, aws_infrastructure, "2g.10gb")
    refusal = partitioning.slices_in_use(strategy)
    assert partitioning.deletion_refusal(strategy) == refusal
    assert "(Sliced) that this would take away: 2g.10gb." in refusal
    assert partitioning.slices_in_use(strategy, {"2g.10gb": 3}) == ""


def test_deleting_a_partitioning_while_its_nodes_drain_is_refused(
    aws_infrastructure, partitioning_factory
):
    """Deleting it would drop the drain flags, so the nodes would take workspaces again
    unsaid."""
    strategy = partitioning_factory(aws_infrastructure)
    strategy.node_states.create(name="gpu-node-1", draining=True)
    strategy.node_states.create(name="gpu-node-2")
    assert partitioning.deletion_refusal(strategy) == (
        "Nodes drain for this partitioning (gpu-node-1); deleting it would put them back in "
        "service. Put them back (or apply, then put them back) first."
    )


def test_the_nav_links_to_partitioning(admin_client):
    page = admin_client.get(reverse("profiles:infrastructure_list")).content.decode()
    assert reverse("profiles:partitioningstrategy_list") in page


@pytest.mark.parametrize("role_fixture", ["viewer", "member"])
def test_only_admins_may_change_partitioning(client, request, role_fixture, aws_infrastructure):
    client.force_login(request.getfixturevalue(role_fixture))
    response = add(client, form_data(aws_infrastructure, layout_name="all-balanced"))
    assert response.status_code == HTTPStatus.FORBIDDEN
    response = client.post(reverse("profiles:partitioning_preview"), {})
    assert response.status_code == HTTPStatus.FORBIDDEN


# --- live feedback -----------------------------------------------------------------------


def test_feedback_for_a_valid_layout_draws_it_and_counts_the_fleet(
    admin_client, datacenter_infrastructure
):
    data = form_data(
        datacenter_infrastructure, mode="custom", **{"count_3g.20gb": 1, "count_2g.10gb": 1}
    )
    page = preview(admin_client, data)
    assert "valid" in page and "invalid" not in page
    # 3g.20gb at slices 0-3 (drawn as one box spanning 4), 2g.10gb at 4-5, 6 and 7 free
    assert 'style="grid-column: 1 / span 4"' in page
    assert page.count('class="free"') == 2
    # 3 hosts × 4 GPUs: 12 of each
    assert '<td data-profile="3g.20gb">12</td>' in page
    assert '<td data-profile="2g.10gb">12</td>' in page


def test_feedback_names_the_validators_reason(admin_client, aws_infrastructure):
    data = form_data(aws_infrastructure, mode="custom", **{"count_3g.20gb": 2, "count_1g.5gb": 1})
    page = preview(admin_client, data)
    assert "invalid" in page
    assert "2×3g.20gb use all 8 memory slices; no room for 1g.5gb" in page


def test_feedback_on_a_cloud_counts_per_node_of_the_instance_type(admin_client, aws_infrastructure):
    page = preview(admin_client, form_data(aws_infrastructure, layout_name="all-1g.5gb"))
    assert "largest enabled instance type with 8× A100-40GB" in page
    assert "<td>1g.5gb</td><td>7</td><td>56</td>" in page


def test_feedback_of_an_a30_draws_four_slices(admin_client, datacenter_infrastructure):
    datacenter_infrastructure.gpu_model = "A30"
    datacenter_infrastructure.save()
    page = preview(
        admin_client, form_data(datacenter_infrastructure, model="A30", layout_name="all-balanced")
    )
    assert "--slices: 4" in page
    assert '<td data-profile="1g.6gb">24</td>' in page  # 2 per GPU × 4 × 3 hosts


def test_feedback_for_whole_gpus(admin_client, datacenter_infrastructure):
    page = preview(admin_client, form_data(datacenter_infrastructure, mode="whole"))
    assert "MIG disabled" in page
    assert '<td data-profile="whole GPUs">12</td>' in page


def test_feedback_survives_garbage(admin_client):
    page = preview(admin_client, {"gpu_model": "nope", "mode": "custom", "count_1g.5gb": "x"})
    assert "layout-feedback" in page


def test_the_model_fields_follow_the_chosen_model(admin_client):
    url = reverse("profiles:partitioning_model_fields")
    page = admin_client.get(url, {"gpu_model": "H100-80GB", "mode": "custom"}).content.decode()
    assert 'name="count_3g.40gb"' in page and 'name="count_3g.20gb"' not in page
    assert "all-1g.10gb" in page
    assert 'class="error"' not in page  # nothing typed yet is an error


# --- all valid layouts -------------------------------------------------------------------


def layout_pages(client, gpu_model: str, query: str = "") -> list[str]:
    """Every page of a model's layouts, following the Next links."""
    url = reverse("profiles:partitioning_layouts", args=[gpu_model])
    pages, link = [], f"?{query}"
    while link:
        response = client.get(url + link.replace("&amp;", "&").split("#")[0])
        assert response.status_code == HTTPStatus.OK
        pages.append(response.content.decode())
        found = re.search(r'<a href="(\?[^"]*)" rel="next">', pages[-1])
        link = found.group(1) if found else ""
    return pages


def test_the_layouts_pages_list_every_layout_and_mark_the_maximal(admin_client):
    pages = layout_pages(admin_client, "A100-40GB")
    total = len(layout.enumerate_layouts("A100-40GB"))
    maximal = len(layout.maximal_layouts("A100-40GB"))
    assert len(pages) == -(-total // LAYOUTS_PER_PAGE)
    assert f"{total} layouts fit on one A100-40GB" in pages[0]
    assert sum(page.count('<tr class="maximal">') for page in pages) == maximal
    assert sum(page.count('<tr class="">') for page in pages) == total - maximal


def test_the_maximal_layouts_can_be_shown_alone(admin_client):
    pages = layout_pages(admin_client, "A100-80GB", "show=maximal")
    assert sum(page.count('<tr class="maximal">') for page in pages) == len(
        layout.maximal_layouts("A100-80GB")
    )
    assert not any('<tr class="">' in page for page in pages)


@pytest.mark.parametrize("gpu_model", ["A100-80GB", "RTX-PRO-6000"])
def test_no_layouts_page_is_over_50_kb_of_html(admin_client, gpu_model):
    """Issue 18: all of an A100-80GB's layouts on one page were 142 KB."""
    pages = layout_pages(admin_client, gpu_model) + layout_pages(
        admin_client, gpu_model, "show=maximal"
    )
    sizes = [len(page.encode()) for page in pages]
    assert max(sizes) < 50_000


def test_a_page_number_out_of_range_shows_the_last_page(admin_client):
    url = reverse("profiles:partitioning_layouts", args=["A100-40GB"])
    response = admin_client.get(url, {"page": "999"})
    assert response.status_code == HTTPStatus.OK
    assert response.context["page"].number == response.context["page"].paginator.num_pages


def test_an_unknown_model_has_no_layouts_page(admin_client):
    response = admin_client.get(reverse("profiles:partitioning_layouts", args=["T4"]))
    assert response.status_code == HTTPStatus.NOT_FOUND


# --- NVML on the local infrastructure page -----------------------------------------------


def test_the_local_page_says_this_host_has_no_gpu(admin_client, local_infrastructure):
    page = admin_client.get(local_infrastructure.get_absolute_url()).content.decode()
    assert "GPUs on this machine (NVML)" in page
    assert "no NVIDIA GPU (" in page


def test_the_local_page_shows_nvml_gpus_and_catalog_differences(
    admin_client, local_infrastructure, monkeypatch
):
    from profiles.mig import nvml

    fake = FakeNvml(mig_devices=[(0, "3g.20gb", 4)])
    real_inventory = nvml.inventory
    monkeypatch.setattr(nvml, "inventory", lambda: real_inventory(fake))
    page = admin_client.get(local_infrastructure.get_absolute_url()).content.decode()
    assert "NVIDIA A100-40GB" in page and "3g.20gb @ 4" in page
    assert "Its MIG profile table matches the catalog." in page or "NVML vs the catalog" in page


def test_other_infrastructure_pages_have_no_nvml_section(admin_client, aws_infrastructure):
    page = admin_client.get(aws_infrastructure.get_absolute_url()).content.decode()
    assert "NVML" not in page


def test_fake_nvml_reuses_pynvml():
    assert FakeNvml.NVMLError is pynvml.NVMLError


@pytest.mark.parametrize(
    "url_name", ["profiles:partitioningstrategy_add", "profiles:partitioning_preview"]
)
def test_random_input_never_causes_a_server_error(admin_client, aws_infrastructure, url_name):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from profiles.forms.partitioning import PartitioningStrategyForm
    from tests.profiles.test_forms_never_500 import HOSTILE

    names = [*PartitioningStrategyForm().fields, "count_1g.5gb", "count_7g.40gb"]
    values = st.one_of(HOSTILE, st.sampled_from(["custom", "named", "whole", "all-balanced", "9"]))

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.fixed_dictionaries({}, optional={name: values for name in names}))
    def post_random(data):
        response = admin_client.post(reverse(url_name), data)
        assert response.status_code in (HTTPStatus.OK, HTTPStatus.FOUND)

    post_random()


def test_the_list_costs_the_same_queries_for_3_or_27_rows(admin_client, partitioning_factory):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from profiles.choices import InfrastructureKind
    from profiles.mig import catalog as mig_catalog
    from profiles.models import Infrastructure

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(reverse("profiles:partitioningstrategy_list"))
        assert response.status_code == HTTPStatus.OK
        return len(queries)

    def add_rows(name: str) -> None:
        infrastructure = Infrastructure.objects.create(
            name=name, kind=InfrastructureKind.DATA_CENTER
        )
        for model in mig_catalog.mig_capable_models():
            partitioning_factory(infrastructure, model, mode="whole")

    add_rows("DC 1")
    few = count_queries()
    add_rows("DC 2")
    add_rows("DC 3")
    assert count_queries() == few
