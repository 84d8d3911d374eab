# Metrics: off by default (custom metrics are billed); when on, each zone's
# role may publish to that one namespace only, the user data carries it, and
# the opt-in dashboard has a row per zone.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

run "publishes_nothing_by_default" {
  command = plan

  assert {
    condition = alltrue(flatten([
      for policy in aws_iam_role_policy.this : [
        for statement in jsondecode(policy.policy).Statement : !contains(statement.Action, "cloudwatch:PutMetricData")
      ]
    ]))
    error_message = "Without metrics_namespace no role may publish metrics."
  }

  assert {
    condition     = alltrue([for text in output.rendered_user_data : strcontains(text, "NAT_METRICS_NAMESPACE=''")])
    error_message = "Without metrics_namespace the user data must configure no metrics."
  }

  assert {
    condition     = length(aws_cloudwatch_dashboard.this) == 0 && output.metrics_dashboard_name == null
    error_message = "No dashboard unless asked for."
  }
}

run "publishes_to_its_namespace_only" {
  command = plan

  variables {
    metrics_namespace = "Egress/NAT"
    metrics_dashboard = true
  }

  assert {
    condition = alltrue([
      for policy in aws_iam_role_policy.this : length([
        for statement in jsondecode(policy.policy).Statement : statement
        if contains(statement.Action, "cloudwatch:PutMetricData") && try(statement.Condition.StringEquals["cloudwatch:namespace"], "") == "Egress/NAT"
      ]) == 1
    ])
    error_message = "Each role must publish metrics to metrics_namespace only (cloudwatch:namespace condition)."
  }

  assert {
    condition     = alltrue([for text in output.rendered_user_data : strcontains(text, "NAT_METRICS_NAMESPACE='Egress/NAT'")])
    error_message = "The user data must carry metrics_namespace."
  }

  assert {
    condition     = length(jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets) == 3 * length(var.zones)
    error_message = "The dashboard must have one row of three graphs per zone."
  }

  assert {
    condition = alltrue([
      for widget in jsondecode(aws_cloudwatch_dashboard.this[0].dashboard_body).widgets :
      alltrue([for metric in widget.properties.metrics : metric[0] == "Egress/NAT" && metric[2] == "AutoScalingGroupName"])
    ])
    error_message = "Every graph must read metrics_namespace by AutoScalingGroupName, as the NATs publish them."
  }
}

run "rejects_metrics_namespace_reserved_for_aws" {
  command = plan

  variables {
    metrics_namespace = "AWS/NATGateway"
  }

  expect_failures = [var.metrics_namespace]
}

run "rejects_metrics_namespace_with_a_space" {
  command = plan

  variables {
    metrics_namespace = "Egress NAT"
  }

  expect_failures = [var.metrics_namespace]
}

run "rejects_dashboard_without_metrics" {
  command = plan

  variables {
    metrics_dashboard = true
  }

  expect_failures = [var.metrics_dashboard]
}
