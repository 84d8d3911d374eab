"""moto's service lookup reads moto's folder once, and answers as moto's own function does."""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError
from moto import backends

from natlab.cloud import moto_speed
from natlab.cloud.backend import MOTO_AL2023_ARM64_AMI


def test_the_module_list_is_moto_s_own_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    moto_speed.apply()
    expected = list(moto_speed._original())
    assert "ec2" in expected and "autoscaling" in expected
    assert list(backends.list_of_moto_modules()) == expected

    def no_disk(path: str) -> list[str]:
        raise AssertionError(f"listed {path} again")

    monkeypatch.setattr(os, "listdir", no_disk)
    assert list(backends.list_of_moto_modules()) == expected


def test_a_started_emulator_serves_with_the_list_read_once(aws) -> None:
    assert backends.list_of_moto_modules is moto_speed._listed_once
    assert aws.client("ec2").describe_vpcs()["Vpcs"] is not None


def test_the_image_catalogue_keeps_the_labs_image_and_leaves_out_the_ecs_ones(aws) -> None:
    ec2 = aws.client("ec2")
    assert ec2.describe_images(ImageIds=[MOTO_AL2023_ARM64_AMI])["Images"], "the labs' AL2023 image is gone"
    ecs_images = moto_speed._load_resource(f"{moto_speed.SKIPPED_IMAGES}{aws.region}.json")
    assert len(ecs_images) > 1000, "moto's ECS catalogue changed: check what the skip saves"
    with pytest.raises(ClientError, match=r"InvalidAMIID\.NotFound"):
        ec2.describe_images(ImageIds=[ecs_images[0]["ami_id"]])


def test_region_lists_are_botocores_own_and_a_new_session_loads_nothing_for_them(monkeypatch: pytest.MonkeyPatch):
    from boto3.session import Session
    from botocore.loaders import Loader

    from natlab.cloud import region_lists

    for partition in ("aws", "aws-us-gov", "aws-cn"):
        expected = region_lists._original(Session(), "ec2", partition)
        assert "us-east-1" in expected or partition != "aws"
        assert Session().get_available_regions("ec2", partition) == expected

    def no_loading(self: Loader, path: str) -> None:
        raise AssertionError(f"loaded {path} again")

    monkeypatch.setattr(Loader, "load_data_with_path", no_loading)
    assert "us-east-1" in Session().get_available_regions("ec2")
