# The default image: read from SSM once, then held. An apply with no
# configuration change never replaces a NAT, even when AWS has published a
# newer Amazon Linux 2023 since; changing ami_refresh_key picks it up.
#
# These runs apply (terraform_data is built in and really runs; AWS is mocked)
# and share one state, in order. The SSM parameter is what AWS publishes; the
# aws_ami override of each run is what EC2 would answer to the image-id filter
# the module sends, and each run also checks that filter itself.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

# The group checks that its launch template ID starts with lt-, which a
# made-up mock ID does not.
override_resource {
  target = aws_launch_template.this
  values = { id = "lt-0a000001" }
}

variables {
  zones = {
    "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" } }
  }
}

run "first_apply_holds_the_image_published_in_ssm" {
  override_data {
    target = data.aws_ssm_parameter.al2023[0]
    values = { insecure_value = "ami-0a0000a1" }
  }

  override_data {
    target = data.aws_ami.this
    values = { id = "ami-0a0000a1", architecture = "arm64", root_device_name = "/dev/xvda" }
  }

  assert {
    condition     = data.aws_ssm_parameter.al2023[0].name == "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
    error_message = "The default image must come from the arm64 Amazon Linux 2023 parameter for an arm64 instance type."
  }

  assert {
    condition     = terraform_data.default_ami[0].output == "ami-0a0000a1"
    error_message = "The first apply must hold the image ID the SSM parameter gave."
  }

  assert {
    condition     = one([for filter in data.aws_ami.this.filter : filter.values if filter.name == "image-id"]) == toset(["ami-0a0000a1"])
    error_message = "The image must be looked up by the held image ID."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].image_id == "ami-0a0000a1"
    error_message = "The launch template must use the held image."
  }
}

run "a_newer_release_plans_no_image_change" {
  command = plan

  override_data {
    target = data.aws_ssm_parameter.al2023[0]
    values = { insecure_value = "ami-0b0000b2" }
  }

  override_data {
    target = data.aws_ami.this
    values = { id = "ami-0a0000a1", architecture = "arm64", root_device_name = "/dev/xvda" }
  }

  # Were the held image about to be replaced, its output, and so the image
  # lookup and the launch template's image_id, would be unknown in this plan.
  assert {
    condition     = terraform_data.default_ami[0].output == "ami-0a0000a1" && aws_launch_template.this["eu-west-1a"].image_id == "ami-0a0000a1"
    error_message = "A newer image in SSM must not change the planned image."
  }
}

run "a_newer_release_changes_nothing_on_apply" {
  override_data {
    target = data.aws_ssm_parameter.al2023[0]
    values = { insecure_value = "ami-0b0000b2" }
  }

  override_data {
    target = data.aws_ami.this
    values = { id = "ami-0a0000a1", architecture = "arm64", root_device_name = "/dev/xvda" }
  }

  assert {
    condition     = data.aws_ssm_parameter.al2023[0].insecure_value == "ami-0b0000b2"
    error_message = "This run must see the newer image in SSM (test setup)."
  }

  assert {
    condition     = terraform_data.default_ami[0].output == "ami-0a0000a1" && terraform_data.default_ami[0].input == "ami-0a0000a1"
    error_message = "An apply with no configuration change must keep the held image, whatever SSM says now."
  }

  assert {
    condition     = one([for filter in data.aws_ami.this.filter : filter.values if filter.name == "image-id"]) == toset(["ami-0a0000a1"])
    error_message = "The image must still be looked up by the held image ID."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].image_id == "ami-0a0000a1"
    error_message = "The launch template, and so the NAT instance, must keep the held image."
  }
}

run "a_new_refresh_key_picks_the_newer_release" {
  variables {
    ami_refresh_key = "2025-06-01"
  }

  override_data {
    target = data.aws_ssm_parameter.al2023[0]
    values = { insecure_value = "ami-0b0000b2" }
  }

  override_data {
    target = data.aws_ami.this
    values = { id = "ami-0b0000b2", architecture = "arm64", root_device_name = "/dev/xvda" }
  }

  assert {
    condition     = terraform_data.default_ami[0].output == "ami-0b0000b2"
    error_message = "A changed ami_refresh_key must hold the image SSM gives now."
  }

  assert {
    condition     = terraform_data.default_ami[0].triggers_replace == ["2025-06-01", "arm64"]
    error_message = "The held image must record the refresh key it was resolved with."
  }

  assert {
    condition     = one([for filter in data.aws_ami.this.filter : filter.values if filter.name == "image-id"]) == toset(["ami-0b0000b2"])
    error_message = "The image must be looked up by the newly held image ID."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].image_id == "ami-0b0000b2"
    error_message = "The launch template must move to the newer image (which rolls the NAT)."
  }
}

run "a_given_ami_id_needs_no_ssm_lookup" {
  variables {
    ami_id = "ami-0c0000c3"
  }

  override_data {
    target = data.aws_ami.this
    values = { id = "ami-0c0000c3", architecture = "arm64", root_device_name = "/dev/xvda" }
  }

  assert {
    condition     = length(data.aws_ssm_parameter.al2023) == 0 && length(terraform_data.default_ami) == 0
    error_message = "With ami_id there must be no SSM lookup and no held default image."
  }

  assert {
    condition     = one([for filter in data.aws_ami.this.filter : filter.values if filter.name == "image-id"]) == toset(["ami-0c0000c3"])
    error_message = "The image must be looked up by ami_id."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].image_id == "ami-0c0000c3"
    error_message = "The launch template must use ami_id."
  }
}

# The held default image is only known at apply, so this rule is checked
# there (tests/validation.tftest.hcl checks it at plan with an ami_id).
run "rejects_root_volume_smaller_than_the_default_ami_snapshot" {
  variables {
    root_volume_size = 4
  }

  override_data {
    target = data.aws_ssm_parameter.al2023[0]
    values = { insecure_value = "ami-0b0000b2" }
  }

  expect_failures = [aws_launch_template.this]
}
