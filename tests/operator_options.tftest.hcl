# What operators add to the instances: further security groups, a CPU credit
# option, a customer managed key for the root volume. Each rule has its
# rejects_ run; the defaults change nothing.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  zones = {
    "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" } }
  }
}

run "defaults_add_no_group_no_credit_option_and_the_default_key" {
  command = plan

  assert {
    condition     = length(aws_launch_template.this["eu-west-1a"].network_interfaces[0].security_groups) == 1
    error_message = "Without additional_security_group_ids the interface must carry the module's group only."
  }

  assert {
    condition     = length(aws_launch_template.this["eu-west-1a"].credit_specification) == 0
    error_message = "Without credit_specification the type's launch default must apply."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].block_device_mappings[0].ebs[0].kms_key_id == null
    error_message = "Without root_volume_kms_key_id the account's default EBS key must apply."
  }
}

run "adds_groups_credit_option_and_key" {
  command = plan

  override_resource {
    target          = aws_security_group.this
    override_during = plan
    values          = { id = "sg-0f000001" }
  }

  variables {
    additional_security_group_ids = ["sg-0a000001", "sg-0123456789abcdef0"]
    credit_specification          = "standard"
    root_volume_kms_key_id        = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].network_interfaces[0].security_groups == toset(["sg-0f000001", "sg-0a000001", "sg-0123456789abcdef0"])
    error_message = "The interface must carry the module's group and every additional group."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].credit_specification[0].cpu_credits == "standard"
    error_message = "credit_specification must reach the launch template."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].block_device_mappings[0].ebs[0].kms_key_id == "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    error_message = "The root volume must be encrypted with root_volume_kms_key_id."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].block_device_mappings[0].ebs[0].encrypted == "true"
    error_message = "The root volume must stay encrypted."
  }
}

run "rejects_malformed_additional_security_group_id" {
  command = plan

  variables {
    additional_security_group_ids = ["sg-12345"]
  }

  expect_failures = [var.additional_security_group_ids]
}

run "rejects_more_than_four_additional_security_groups" {
  command = plan

  variables {
    additional_security_group_ids = ["sg-0a000001", "sg-0a000002", "sg-0a000003", "sg-0a000004", "sg-0a000005"]
  }

  expect_failures = [var.additional_security_group_ids]
}

run "rejects_unknown_credit_specification" {
  command = plan

  variables {
    credit_specification = "burst"
  }

  expect_failures = [var.credit_specification]
}

run "rejects_credit_specification_on_a_type_that_is_not_burstable" {
  command = plan

  variables {
    instance_type        = "c7g.medium"
    credit_specification = "unlimited"
  }

  override_data {
    target = data.aws_ec2_instance_type.this
    values = { supported_architectures = ["arm64"], burstable_performance_supported = false }
  }

  expect_failures = [aws_launch_template.this]
}

run "rejects_kms_alias_for_the_root_volume" {
  command = plan

  variables {
    root_volume_kms_key_id = "arn:aws:kms:eu-west-1:123456789012:alias/nat"
  }

  expect_failures = [var.root_volume_kms_key_id]
}
