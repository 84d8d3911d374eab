# Input rules: one rejects_<bad_input> run per validation rule, pre- and
# postcondition, each expecting exactly the object whose rule it breaks.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

run "accepts_two_zones_with_defaults" {
  command = plan
}

run "accepts_existing_elastic_ips" {
  command = plan

  variables {
    elastic_ip = "existing"
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" }, eip_allocation_id = "eipalloc-0a000001" }
      "eu-west-1b" = { public_subnet_id = "subnet-0b000001", private_route_tables = { main = "rtb-0b000001" }, eip_allocation_id = "eipalloc-0b000001" }
    }
  }
}

# name

run "rejects_name_longer_than_32_characters" {
  command = plan

  variables {
    name = "a-name-that-is-far-too-long-for-aws"
  }

  expect_failures = [var.name]
}

run "rejects_name_with_invalid_characters" {
  command = plan

  variables {
    name = "egress_nat"
  }

  expect_failures = [var.name]
}

# vpc_id

run "rejects_malformed_vpc_id" {
  command = plan

  variables {
    vpc_id = "vpc_0a000001"
  }

  expect_failures = [var.vpc_id]
}

# zones

run "rejects_empty_zones" {
  command = plan

  variables {
    zones = {}
  }

  expect_failures = [var.zones]
}

run "rejects_zone_key_that_is_not_an_availability_zone" {
  command = plan

  variables {
    zones = {
      "public-a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" } }
    }
  }

  expect_failures = [var.zones]
}

run "rejects_malformed_subnet_id" {
  command = plan

  variables {
    zones = {
      "eu-west-1a" = { public_subnet_id = "sn-0a000001", private_route_tables = { main = "rtb-0a000001" } }
    }
  }

  expect_failures = [var.zones]
}

run "rejects_zone_without_route_tables" {
  command = plan

  variables {
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = {} }
    }
  }

  expect_failures = [var.zones]
}

run "rejects_malformed_route_table_key" {
  command = plan

  variables {
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { "App Tier" = "rtb-0a000001" } }
    }
  }

  expect_failures = [var.zones]
}

run "rejects_malformed_route_table_id" {
  command = plan

  variables {
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rt-0a000001" } }
    }
  }

  expect_failures = [var.zones]
}

run "rejects_route_table_in_two_zones" {
  command = plan

  variables {
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" } }
      "eu-west-1b" = { public_subnet_id = "subnet-0b000001", private_route_tables = { main = "rtb-0a000001" } }
    }
  }

  expect_failures = [var.zones]
}

run "rejects_malformed_eip_allocation_id" {
  command = plan

  variables {
    elastic_ip = "existing"
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" }, eip_allocation_id = "eip-0a000001" }
    }
  }

  expect_failures = [var.zones]
}

run "rejects_eip_allocation_id_in_two_zones" {
  command = plan

  variables {
    elastic_ip = "existing"
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" }, eip_allocation_id = "eipalloc-0a000001" }
      "eu-west-1b" = { public_subnet_id = "subnet-0b000001", private_route_tables = { main = "rtb-0b000001" }, eip_allocation_id = "eipalloc-0a000001" }
    }
  }

  expect_failures = [var.zones]
}

# takeover

run "rejects_unknown_takeover_mode" {
  command = plan

  variables {
    takeover = "hot-spare"
  }

  expect_failures = [var.takeover]
}

run "rejects_probe_target_without_port" {
  command = plan

  variables {
    takeover_probe_target = "ec2.eu-west-1.amazonaws.com"
  }

  expect_failures = [var.takeover_probe_target]
}

# elastic_ip

run "rejects_unknown_elastic_ip_mode" {
  command = plan

  variables {
    elastic_ip = "allocate"
  }

  expect_failures = [var.elastic_ip]
}

run "rejects_existing_elastic_ip_without_allocation_ids" {
  command = plan

  variables {
    elastic_ip = "existing"
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" }, eip_allocation_id = "eipalloc-0a000001" }
      "eu-west-1b" = { public_subnet_id = "subnet-0b000001", private_route_tables = { main = "rtb-0b000001" } }
    }
  }

  expect_failures = [var.elastic_ip]
}

run "rejects_allocation_id_without_existing_elastic_ip" {
  command = plan

  variables {
    elastic_ip = "create"
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" }, eip_allocation_id = "eipalloc-0a000001" }
    }
  }

  expect_failures = [var.elastic_ip]
}

# route_destination_cidr and served_cidrs

run "rejects_ipv6_route_destination" {
  command = plan

  variables {
    route_destination_cidr = "::/0"
  }

  expect_failures = [var.route_destination_cidr]
}

run "rejects_route_destination_with_host_bits" {
  command = plan

  variables {
    route_destination_cidr = "10.0.0.1/8"
  }

  expect_failures = [var.route_destination_cidr]
}

run "accepts_canonical_cidrs" {
  command = plan

  variables {
    route_destination_cidr = "192.0.2.0/24"
    served_cidrs           = ["10.0.16.0/20", "100.64.0.0/16"]
  }
}

run "rejects_malformed_served_cidr" {
  command = plan

  variables {
    served_cidrs = ["10.0.0.0/33"]
  }

  expect_failures = [var.served_cidrs]
}

run "rejects_served_cidr_of_the_whole_internet" {
  command = plan

  variables {
    served_cidrs = ["10.0.0.0/16", "0.0.0.0/0"]
  }

  expect_failures = [var.served_cidrs]
}

run "rejects_served_cidrs_with_host_bits" {
  command = plan

  variables {
    served_cidrs = ["10.0.0.0/16", "10.1.2.3/16"]
  }

  expect_failures = [var.served_cidrs]
}

# Instances

run "rejects_malformed_instance_type" {
  command = plan

  variables {
    instance_type = "t4g nano"
  }

  expect_failures = [var.instance_type]
}

run "rejects_malformed_ami_id" {
  command = plan

  variables {
    ami_id = "image-0a000001"
  }

  expect_failures = [var.ami_id]
}

run "rejects_root_volume_size_out_of_range" {
  command = plan

  variables {
    root_volume_size = 0
  }

  expect_failures = [var.root_volume_size]
}

run "rejects_empty_key_name" {
  command = plan

  variables {
    key_name = ""
  }

  expect_failures = [var.key_name]
}

run "rejects_malformed_permissions_boundary" {
  command = plan

  variables {
    iam_role_permissions_boundary = "boundary"
  }

  expect_failures = [var.iam_role_permissions_boundary]
}

# Replacement and alarms

run "rejects_negative_health_check_grace_period" {
  command = plan

  variables {
    health_check_grace_period = -1
  }

  expect_failures = [var.health_check_grace_period]
}

run "rejects_no_grace_period_without_launch_hook" {
  command = plan

  variables {
    launch_lifecycle_hook = false
    warm_pool             = null
  }

  expect_failures = [var.health_check_grace_period]
}

run "grace_period_is_0_with_the_launch_hook_by_default" {
  command = plan

  assert {
    condition     = alltrue([for asg in aws_autoscaling_group.this : asg.health_check_grace_period == 0])
    error_message = "With the launch hook and no health_check_grace_period, groups must have no grace period: the hook already keeps a booting NAT out of service."
  }
}

run "accepts_grace_period_without_launch_hook" {
  command = plan

  variables {
    launch_lifecycle_hook     = false
    warm_pool                 = null
    health_check_grace_period = 90
  }

  assert {
    condition     = alltrue([for asg in aws_autoscaling_group.this : asg.health_check_grace_period == 90])
    error_message = "Without the launch hook, groups must use the given health_check_grace_period."
  }
}

run "accepts_grace_period_with_launch_hook" {
  command = plan

  variables {
    health_check_grace_period = 30
  }

  assert {
    condition     = alltrue([for asg in aws_autoscaling_group.this : asg.health_check_grace_period == 30])
    error_message = "A given health_check_grace_period must be used with the launch hook too."
  }
}

run "rejects_heartbeat_timeout_below_30_seconds" {
  command = plan

  variables {
    lifecycle_hook_heartbeat_timeout = 10
  }

  expect_failures = [var.lifecycle_hook_heartbeat_timeout]
}

run "rejects_malformed_notification_topic_arn" {
  command = plan

  variables {
    notification_topic_arn = "arn:aws:sqs:eu-west-1:123456789012:nat-events"
  }

  expect_failures = [var.notification_topic_arn]
}

# What the module looks up must agree with what it was told.

run "rejects_subnet_in_another_availability_zone" {
  command = plan

  override_data {
    target = data.aws_subnet.public["eu-west-1b"]
    values = { availability_zone = "eu-west-1c", vpc_id = "vpc-0a000001" }
  }

  expect_failures = [data.aws_subnet.public]
}

run "rejects_subnet_in_another_vpc" {
  command = plan

  override_data {
    target = data.aws_subnet.public["eu-west-1a"]
    values = { availability_zone = "eu-west-1a", vpc_id = "vpc-0f000009" }
  }

  expect_failures = [data.aws_subnet.public]
}

run "rejects_ami_built_for_another_architecture" {
  command = plan

  variables {
    ami_id = "ami-0a000001"
  }

  override_data {
    target = data.aws_ami.this
    values = { id = "ami-0a000001", architecture = "x86_64", root_device_name = "/dev/xvda" }
  }

  expect_failures = [aws_launch_template.this]
}

run "rejects_root_volume_smaller_than_the_ami_snapshot" {
  command = plan

  # With ami_id the image is read at plan time; the held default image only
  # after the first apply, where tests/image.tftest.hcl checks the same rule.
  variables {
    ami_id           = "ami-0123456789abcdef0"
    root_volume_size = 4
  }

  expect_failures = [aws_launch_template.this]
}
