# Spot: purchase_option and instance_types. On-demand (the default) keeps the
# plain launch template; spot gives each group a mixed instances policy, all
# Spot, price-capacity-optimized, one override per type, with capacity
# rebalancing. Bad values are rejected at plan with a message naming the field.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

run "stays_on_demand_with_one_type_by_default" {
  command = plan

  assert {
    condition     = length(aws_autoscaling_group.this["eu-west-1a"].mixed_instances_policy) == 0 && length(aws_autoscaling_group.this["eu-west-1a"].launch_template) == 1
    error_message = "On-demand (the default) must launch from the launch template alone, without a mixed instances policy."
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1a"].capacity_rebalance == false
    error_message = "Capacity rebalancing is a Spot feature: off for on-demand."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].instance_type == "t4g.nano"
    error_message = "Without instance_types the launch template must take instance_type."
  }
}

run "gives_spot_groups_a_mixed_instances_policy" {
  command = plan

  variables {
    purchase_option = "spot"
    instance_types  = ["t4g.nano", "t4g.micro"]
    warm_pool       = null
  }

  assert {
    condition     = length(aws_autoscaling_group.this["eu-west-1b"].launch_template) == 0 && length(aws_autoscaling_group.this["eu-west-1b"].mixed_instances_policy) == 1
    error_message = "A Spot group must launch through a mixed instances policy (a group takes one or the other)."
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1b"].mixed_instances_policy[0].instances_distribution[0].on_demand_base_capacity == 0 && aws_autoscaling_group.this["eu-west-1b"].mixed_instances_policy[0].instances_distribution[0].on_demand_percentage_above_base_capacity == 0
    error_message = "Spot means no on-demand instance: base 0 and 0 % above it."
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1b"].mixed_instances_policy[0].instances_distribution[0].spot_allocation_strategy == "price-capacity-optimized"
    error_message = "Spot instances must come from the pools least likely to be interrupted at a low price (price-capacity-optimized)."
  }

  assert {
    condition     = [for o in aws_autoscaling_group.this["eu-west-1b"].mixed_instances_policy[0].launch_template[0].override : o.instance_type] == ["t4g.nano", "t4g.micro"]
    error_message = "Each of instance_types must be an override, in the order given."
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1b"].capacity_rebalance == true
    error_message = "Spot groups must rebalance capacity: a replacement launches on the rebalance recommendation."
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1b"].instance_type == "t4g.nano"
    error_message = "The launch template must carry the first of instance_types."
  }
}

run "takes_a_single_type_list_for_on_demand" {
  command = plan

  variables {
    instance_types = ["c7gn.medium"]
  }

  assert {
    condition     = aws_launch_template.this["eu-west-1a"].instance_type == "c7gn.medium"
    error_message = "instance_types, when set, must replace instance_type."
  }
}

# purchase_option

run "rejects_unknown_purchase_option" {
  command = plan

  variables {
    purchase_option = "reserved"
  }

  expect_failures = [var.purchase_option]
}

run "rejects_spot_with_a_warm_pool" {
  command = plan

  variables {
    purchase_option = "spot"
  }

  expect_failures = [var.purchase_option]
}

# instance_types

run "rejects_malformed_instance_types" {
  command = plan

  variables {
    instance_types = ["t4g nano"]
  }

  expect_failures = [var.instance_types]
}

run "rejects_instance_types_listed_twice" {
  command = plan

  variables {
    purchase_option = "spot"
    instance_types  = ["t4g.nano", "t4g.nano"]
    warm_pool       = null
  }

  expect_failures = [var.instance_types]
}

run "rejects_several_instance_types_on_demand" {
  command = plan

  variables {
    instance_types = ["t4g.nano", "t4g.micro"]
  }

  expect_failures = [var.instance_types]
}

run "rejects_instance_types_of_two_architectures" {
  command = plan

  variables {
    purchase_option = "spot"
    instance_types  = ["t4g.nano", "t3.nano"]
    warm_pool       = null
  }

  override_data {
    target = data.aws_ec2_instance_type.allowed["t3.nano"]
    values = { supported_architectures = ["x86_64", "i386"], burstable_performance_supported = true }
  }

  expect_failures = [aws_launch_template.this]
}
