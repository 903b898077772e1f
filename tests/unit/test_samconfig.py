"""samconfig.toml's deploy defaults fit the template: every parameter override names a template parameter
with a value the parameter allows, and every environment deploys with the capability its IAM roles need."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

import pytest

from batchbridge_local import template

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "samconfig.toml").read_text())
PARAMETERS = template.load()["Parameters"]


def overrides(environment: str) -> dict[str, str]:
    text = CONFIG[environment]["deploy"]["parameters"]["parameter_overrides"]
    return dict(pair.split("=", 1) for pair in shlex.split(text))


@pytest.mark.parametrize("environment", ["default", "prod"])
def test_overrides_name_template_parameters_with_allowed_values(environment):
    for name, value in overrides(environment).items():
        assert name in PARAMETERS, name
        spec = PARAMETERS[name]
        if "AllowedValues" in spec:
            assert value in {str(v) for v in spec["AllowedValues"]}, (name, value)
        if spec["Type"] == "Number":
            number = float(value)
            assert spec.get("MinValue", number) <= number <= spec.get("MaxValue", number), (name, value)


@pytest.mark.parametrize("environment", ["default", "prod"])
def test_each_environment_has_its_own_stack_and_can_create_the_roles(environment):
    deploy = CONFIG[environment]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert CONFIG[environment]["global"]["parameters"]["stack_name"]
    roles = [r for r in template.load()["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert all("RoleName" not in r["Properties"] for r in roles)  # else CAPABILITY_NAMED_IAM
    assert (
        CONFIG["default"]["global"]["parameters"]["stack_name"]
        != CONFIG["prod"]["global"]["parameters"]["stack_name"]
    )
