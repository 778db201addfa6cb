"""No user input may cause a 500: every admin form gets random and hostile values."""

from http import HTTPStatus

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.forms import ComputeProfileForm, InfrastructureForm, ServicesProfileForm

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("aws")]

HOSTILE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "-1",
            "1e9",
            "99999999999999999999",
            "",
            " ",
            "0x10",
            "NaN",
            "aws",
            "public_cloud",
            "data_center",
            "kubernetes",
            "local",
            "A100-40GB",
            "3g.20gb",
            "warm_pool",
            "on_demand",
            "<script>",
            "\x00",
            "1",
        ]
    ),
)


def field_names(form_class) -> list[str]:
    form = form_class()
    names = list(form.fields)
    inline = getattr(form, "inline", None)
    if inline is not None:
        names += [f"{inline.prefix}-0-{name}" for name in inline.empty_form.fields]
        names += [f"{inline.prefix}-TOTAL_FORMS", f"{inline.prefix}-INITIAL_FORMS"]
    return names


@pytest.mark.parametrize(
    ("url_name", "form_class"),
    [
        ("profiles:infrastructure_add", InfrastructureForm),
        ("profiles:computeprofile_add", ComputeProfileForm),
        ("profiles:servicesprofile_add", ServicesProfileForm),
    ],
)
def test_random_input_never_causes_a_server_error(
    admin_client, aws_infrastructure, url_name, form_class
):
    names = field_names(form_class)

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.fixed_dictionaries({}, optional={name: HOSTILE for name in names}))
    def post_random(data):
        response = admin_client.post(reverse(url_name), data)
        assert response.status_code in (HTTPStatus.OK, HTTPStatus.FOUND)

    post_random()
