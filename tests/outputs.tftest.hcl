# Outputs: keyed by zone, empty (never absent) when a feature is off.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

override_data {
  target = data.aws_eip.existing["eu-west-1a"]
  values = { public_ip = "203.0.113.1" }
}

override_data {
  target = data.aws_eip.existing["eu-west-1b"]
  values = { public_ip = "203.0.113.2" }
}

run "defaults" {
  command = plan

  override_resource {
    target          = aws_iam_instance_profile.this["eu-west-1a"]
    override_during = plan
    values          = { arn = "arn:aws:iam::123456789012:instance-profile/egress-eu-west-1a-profile" }
  }

  override_resource {
    target          = aws_iam_instance_profile.this["eu-west-1b"]
    override_during = plan
    values          = { arn = "arn:aws:iam::123456789012:instance-profile/egress-eu-west-1b-profile" }
  }

  assert {
    condition     = output.autoscaling_group_names == tomap({ "eu-west-1a" = "egress-eu-west-1a", "eu-west-1b" = "egress-eu-west-1b" })
    error_message = "autoscaling_group_names must map each zone to <name>-<zone>."
  }

  assert {
    condition     = keys(output.launch_template_ids) == tolist(["eu-west-1a", "eu-west-1b"]) && keys(output.route_placeholder_network_interface_ids) == tolist(["eu-west-1a", "eu-west-1b"])
    error_message = "Per-zone outputs must be keyed by zone."
  }

  assert {
    condition     = keys(output.iam_role_arns) == tolist(["eu-west-1a", "eu-west-1b"]) && keys(output.iam_role_names) == tolist(["eu-west-1a", "eu-west-1b"]) && keys(output.instance_profile_arns) == tolist(["eu-west-1a", "eu-west-1b"])
    error_message = "iam_role_arns, iam_role_names and instance_profile_arns must map each zone to its own role and profile."
  }

  assert {
    condition     = output.instance_profile_arns == tomap({ "eu-west-1a" = "arn:aws:iam::123456789012:instance-profile/egress-eu-west-1a-profile", "eu-west-1b" = "arn:aws:iam::123456789012:instance-profile/egress-eu-west-1b-profile" })
    error_message = "instance_profile_arns must give each zone's own instance profile."
  }

  assert {
    condition     = output.status_check_alarm_names == tomap({ "eu-west-1a" = "egress-eu-west-1a-status-check", "eu-west-1b" = "egress-eu-west-1b-status-check" })
    error_message = "status_check_alarm_names must map each zone to its alarm."
  }

  assert {
    condition     = output.lifecycle_hook_name == "egress-launch"
    error_message = "lifecycle_hook_name must be <name>-launch."
  }

  assert {
    condition     = length(output.elastic_ip_public_ips) == 0 && length(output.elastic_ip_allocation_ids) == 0
    error_message = "Without Elastic IPs the Elastic IP outputs must be empty maps."
  }
}

run "features_off" {
  command = plan

  variables {
    status_check_alarm        = false
    launch_lifecycle_hook     = false
    warm_pool                 = null
    health_check_grace_period = 120
  }

  assert {
    condition     = length(output.status_check_alarm_names) == 0
    error_message = "status_check_alarm_names must be empty when the alarm is off."
  }

  assert {
    condition     = output.lifecycle_hook_name == null
    error_message = "lifecycle_hook_name must be null when the hook is off."
  }
}

run "created_elastic_ips" {
  command = plan

  variables {
    elastic_ip = "create"
  }

  assert {
    condition     = output.elastic_ip_allocation_ids == tomap({ "eu-west-1a" = "eipalloc-0a00000c", "eu-west-1b" = "eipalloc-0b00000c" })
    error_message = "elastic_ip_allocation_ids must map each zone to its created Elastic IP."
  }

  assert {
    condition     = output.elastic_ip_public_ips == tomap({ "eu-west-1a" = "198.51.100.1", "eu-west-1b" = "198.51.100.2" })
    error_message = "elastic_ip_public_ips must map each zone to its created address."
  }

  assert {
    condition     = strcontains(output.rendered_user_data["eu-west-1a"], "'eipalloc-0a00000c'")
    error_message = "The boot script must be told its zone's allocation ID."
  }
}

run "existing_elastic_ips" {
  command = plan

  variables {
    elastic_ip = "existing"
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" }, eip_allocation_id = "eipalloc-0a00000e" }
      "eu-west-1b" = { public_subnet_id = "subnet-0b000001", private_route_tables = { main = "rtb-0b000001" }, eip_allocation_id = "eipalloc-0b00000e" }
    }
  }

  assert {
    condition     = output.elastic_ip_allocation_ids == tomap({ "eu-west-1a" = "eipalloc-0a00000e", "eu-west-1b" = "eipalloc-0b00000e" })
    error_message = "elastic_ip_allocation_ids must pass the given allocation IDs through."
  }

  assert {
    condition     = output.elastic_ip_public_ips == tomap({ "eu-west-1a" = "203.0.113.1", "eu-west-1b" = "203.0.113.2" })
    error_message = "elastic_ip_public_ips must report the existing addresses."
  }

  assert {
    condition     = length(aws_eip.this) == 0
    error_message = "Existing Elastic IPs must not be allocated again."
  }
}
