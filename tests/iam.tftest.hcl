# IAM: the instance role may change only this module's route tables, alarms,
# groups, Elastic IPs and its own tagged interfaces; "*" is for Describe only.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  zones = {
    "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { app = "rtb-0a000001", db = "rtb-0a000002" } }
    "eu-west-1b" = { public_subnet_id = "subnet-0b000001", private_route_tables = { main = "rtb-0b000001" } }
  }
}

run "defaults_scope_every_mutating_action" {
  command = plan

  assert {
    condition = alltrue([
      for statement in jsondecode(aws_iam_role_policy.this.policy).Statement :
      statement.Resource != "*" || alltrue([for action in statement.Action : startswith(split(":", action)[1], "Describe")])
    ])
    error_message = "Only Describe* actions may use Resource \"*\"."
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this.policy).Statement : statement.Resource
      if contains(statement.Action, "ec2:ReplaceRoute")
      ]) == [
      "arn:aws:ec2:eu-west-1:123456789012:route-table/rtb-0a000001",
      "arn:aws:ec2:eu-west-1:123456789012:route-table/rtb-0a000002",
      "arn:aws:ec2:eu-west-1:123456789012:route-table/rtb-0b000001",
    ]
    error_message = "CreateRoute/ReplaceRoute must be limited to the configured route tables."
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this.policy).Statement :
      statement.Condition.StringEquals["ec2:ResourceTag/nat-instance:group"]
      if contains(statement.Action, "ec2:ModifyNetworkInterfaceAttribute")
    ]) == ["egress-eu-west-1a", "egress-eu-west-1b"]
    error_message = "ModifyNetworkInterfaceAttribute must require the interface to carry one of the module's group tags."
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this.policy).Statement : statement.Resource
      if contains(statement.Action, "cloudwatch:PutMetricAlarm")
      ]) == [
      "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:egress-eu-west-1a-status-check",
      "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:egress-eu-west-1b-status-check",
    ]
    error_message = "PutMetricAlarm must be limited to the module's status check alarms."
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this.policy).Statement :
      statement.Condition["ForAllValues:StringEquals"]["cloudwatch:AlarmActions"]
      if contains(statement.Action, "cloudwatch:PutMetricAlarm")
    ]) == ["arn:aws:automate:eu-west-1:ec2:terminate"]
    error_message = "The instance may give its alarm no action but the EC2 terminate action (and the topic)."
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this.policy).Statement : statement.Resource
      if contains(statement.Action, "autoscaling:CompleteLifecycleAction")
      ]) == [
      "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/egress-eu-west-1a",
      "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/egress-eu-west-1b",
    ]
    error_message = "CompleteLifecycleAction must be limited to the module's groups."
  }

  assert {
    condition = length([
      for statement in jsondecode(aws_iam_role_policy.this.policy).Statement : statement
      if contains(statement.Action, "ec2:AssociateAddress")
    ]) == 0
    error_message = "Without Elastic IPs the role must not associate addresses."
  }

  assert {
    condition     = jsondecode(aws_iam_role.this.assume_role_policy).Statement[0].Principal.Service == "ec2.amazonaws.com"
    error_message = "Only EC2 may assume the instance role."
  }

  assert {
    condition     = length(aws_iam_role_policy_attachment.ssm) == 0
    error_message = "Session Manager access must be off by default."
  }
}

run "created_elastic_ips_are_the_only_addresses_the_role_may_associate" {
  command = plan

  variables {
    elastic_ip = "create"
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this.policy).Statement : statement.Resource
      if contains(statement.Action, "ec2:AssociateAddress") && !can(statement.Condition)
      ]) == [
      "arn:aws:ec2:eu-west-1:123456789012:elastic-ip/eipalloc-0a00000c",
      "arn:aws:ec2:eu-west-1:123456789012:elastic-ip/eipalloc-0b00000c",
    ]
    error_message = "AssociateAddress must be limited to the module's Elastic IPs."
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this.policy).Statement :
      statement.Condition.StringEquals["ec2:ResourceTag/nat-instance:group"]
      if contains(statement.Action, "ec2:AssociateAddress") && can(statement.Condition)
    ]) == ["egress-eu-west-1a", "egress-eu-west-1b"]
    error_message = "AssociateAddress must require the target interface to carry one of the module's group tags."
  }
}

run "existing_elastic_ips_are_the_only_addresses_the_role_may_associate" {
  command = plan

  variables {
    elastic_ip = "existing"
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" }, eip_allocation_id = "eipalloc-0a00000e" }
      "eu-west-1b" = { public_subnet_id = "subnet-0b000001", private_route_tables = { main = "rtb-0b000001" }, eip_allocation_id = "eipalloc-0b00000e" }
    }
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this.policy).Statement : statement.Resource
      if contains(statement.Action, "ec2:AssociateAddress") && !can(statement.Condition)
      ]) == [
      "arn:aws:ec2:eu-west-1:123456789012:elastic-ip/eipalloc-0a00000e",
      "arn:aws:ec2:eu-west-1:123456789012:elastic-ip/eipalloc-0b00000e",
    ]
    error_message = "AssociateAddress must be limited to the given Elastic IPs."
  }
}

run "without_alarm_and_hook_the_role_cannot_touch_them" {
  command = plan

  variables {
    status_check_alarm    = false
    launch_lifecycle_hook = false
  }

  assert {
    condition = length([
      for statement in jsondecode(aws_iam_role_policy.this.policy).Statement : statement
      if contains(statement.Action, "cloudwatch:PutMetricAlarm") || contains(statement.Action, "autoscaling:CompleteLifecycleAction")
    ]) == 0
    error_message = "Without alarms and hook, the role must not be allowed PutMetricAlarm or CompleteLifecycleAction."
  }
}

run "alarm_actions_condition_includes_the_topic" {
  command = plan

  variables {
    notification_topic_arn = "arn:aws:sns:eu-west-1:123456789012:nat-events"
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this.policy).Statement :
      statement.Condition["ForAllValues:StringEquals"]["cloudwatch:AlarmActions"]
      if contains(statement.Action, "cloudwatch:PutMetricAlarm")
    ]) == ["arn:aws:automate:eu-west-1:ec2:terminate", "arn:aws:sns:eu-west-1:123456789012:nat-events"]
    error_message = "The instance must be able to keep the topic among its alarm's actions."
  }
}

run "ssm_access_attaches_the_managed_policy" {
  command = plan

  variables {
    ssm_access                    = true
    iam_role_permissions_boundary = "arn:aws:iam::123456789012:policy/boundary"
  }

  assert {
    condition     = aws_iam_role_policy_attachment.ssm[0].policy_arn == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    error_message = "ssm_access must attach AmazonSSMManagedInstanceCore."
  }

  assert {
    condition     = aws_iam_role.this.permissions_boundary == "arn:aws:iam::123456789012:policy/boundary"
    error_message = "iam_role_permissions_boundary must be set on the role."
  }
}
