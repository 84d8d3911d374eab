# Warm pool: on by default (one stopped, prepared instance per zone), off with
# null, and bad values rejected at plan with a message naming the field.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

run "keeps_one_stopped_instance_per_zone_by_default" {
  command = plan

  assert {
    condition     = length(aws_autoscaling_group.this["eu-west-1a"].warm_pool) == 1
    error_message = "Each zone's group must have a warm pool by default."
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1b"].warm_pool[0].pool_state == "Stopped"
    error_message = "Warm instances must wait Stopped by default (EBS cost only)."
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1a"].warm_pool[0].min_size == 1
    error_message = "One warm instance per zone by default."
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1a"].warm_pool[0].instance_reuse_policy[0].reuse_on_scale_in == false
    error_message = "Scale-in must terminate by default, not return instances to the pool."
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1a"].force_delete_warm_pool == true
    error_message = "Destroying the module must delete the warm pool's instances too."
  }
}

run "takes_the_pool_size_and_reuse_given" {
  command = plan

  variables {
    warm_pool = { min_size = 2, reuse_on_scale_in = true }
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1a"].warm_pool[0].min_size == 2
    error_message = "warm_pool.min_size must reach the group's warm pool."
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1a"].warm_pool[0].instance_reuse_policy[0].reuse_on_scale_in == true
    error_message = "warm_pool.reuse_on_scale_in must reach the group's warm pool."
  }
}

run "has_no_warm_pool_when_null" {
  command = plan

  variables {
    warm_pool = null
  }

  assert {
    condition     = length(aws_autoscaling_group.this["eu-west-1a"].warm_pool) == 0
    error_message = "warm_pool = null must leave the groups without a warm pool."
  }
}

run "rejects_hibernated_pool_state" {
  command = plan

  variables {
    warm_pool = { pool_state = "Hibernated" }
  }

  expect_failures = [var.warm_pool]
}

run "rejects_running_pool_state" {
  command = plan

  variables {
    warm_pool = { pool_state = "Running" }
  }

  expect_failures = [var.warm_pool]
}

run "rejects_empty_pool" {
  command = plan

  variables {
    warm_pool = { min_size = 0 }
  }

  expect_failures = [var.warm_pool]
}

run "rejects_fractional_pool_size" {
  command = plan

  variables {
    warm_pool = { min_size = 1.5 }
  }

  expect_failures = [var.warm_pool]
}

run "rejects_warm_pool_without_launch_lifecycle_hook" {
  command = plan

  variables {
    launch_lifecycle_hook     = false
    health_check_grace_period = 120
  }

  expect_failures = [var.warm_pool]
}

run "accepts_no_launch_lifecycle_hook_without_warm_pool" {
  command = plan

  variables {
    launch_lifecycle_hook     = false
    health_check_grace_period = 120
    warm_pool                 = null
  }
}
