"""A component's pod is sized within what a compute profile's resource group may ask for,
and its version is something an image tag can be made of."""

import pytest

from profiles import models as profiles
from services import components
from services.components import base
from services.components.ray import MAX_WORKERS


def test_a_pod_may_ask_for_what_a_resource_group_may_and_no_more():
    """The catalog cannot import profiles (profiles imports it), so it repeats the maxima."""
    assert base.MAX_CPU == profiles.MAX_CPU
    assert base.MAX_MEMORY_GB == profiles.MAX_RAM_GB
    assert base.MAX_STORAGE_GB == profiles.MAX_STORAGE_GB
    assert MAX_WORKERS == profiles.MAX_NODE_COUNT


@pytest.mark.parametrize("code", sorted(components.COMPONENTS))
def test_every_whole_number_parameter_has_a_maximum(code):
    found = components.component(code)
    unbounded = [p.name for p in found.parameters if p.kind == components.INT and p.maximum is None]
    assert unbounded == []


@pytest.mark.parametrize("code", sorted(components.COMPONENTS))
def test_every_default_version_makes_an_image_tag(code):
    assert components.version_problem(components.component(code).default_version) == ""


def test_a_version_of_128_characters_is_a_tag_and_one_of_129_is_not():
    assert components.version_problem("v" * 128) == ""
    assert components.version_problem("v" * 129) != ""
