# IAM: one role per zone. A zone's role may change only that zone's route
# tables, Elastic IP, group and tagged interfaces; "*" is for Describe only;
# no CloudWatch action at all. With takeover (the default) it may also
# re-point this module's other route tables and mark this module's groups'
# instances unhealthy, and nothing beyond the module. tests/test_iam_policy.py reads the plans of
# these runs, so every run plans the groups and the policies.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

# Known names and ARNs for each zone's role and instance profile, so that the
# wiring (policy -> role -> profile -> launch template) can be followed.
override_resource {
  target          = aws_iam_role.this["eu-west-1a"]
  override_during = plan
  values          = { id = "egress-eu-west-1a-role", name = "egress-eu-west-1a-role", arn = "arn:aws:iam::123456789012:role/egress-eu-west-1a-role" }
}

override_resource {
  target          = aws_iam_role.this["eu-west-1b"]
  override_during = plan
  values          = { id = "egress-eu-west-1b-role", name = "egress-eu-west-1b-role", arn = "arn:aws:iam::123456789012:role/egress-eu-west-1b-role" }
}

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

variables {
  zones = {
    "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { app = "rtb-0a000001", db = "rtb-0a000002" } }
    "eu-west-1b" = { public_subnet_id = "subnet-0b000001", private_route_tables = { main = "rtb-0b000001" } }
  }
}

run "without_takeover_every_mutating_action_stays_in_the_zone" {
  command = plan

  variables {
    takeover = "off"
  }

  assert {
    condition     = keys(aws_iam_role.this) == ["eu-west-1a", "eu-west-1b"] && keys(aws_iam_role_policy.this) == ["eu-west-1a", "eu-west-1b"] && keys(aws_iam_instance_profile.this) == ["eu-west-1a", "eu-west-1b"]
    error_message = "Each zone must have its own role, policy and instance profile, keyed by zone."
  }

  assert {
    condition = alltrue([
      for zone in ["eu-west-1a", "eu-west-1b"] :
      aws_iam_role_policy.this[zone].role == "egress-${zone}-role" && aws_iam_instance_profile.this[zone].role == "egress-${zone}-role"
    ])
    error_message = "Each zone's policy and instance profile must belong to that zone's role."
  }

  assert {
    condition = alltrue([
      for zone in ["eu-west-1a", "eu-west-1b"] :
      aws_launch_template.this[zone].iam_instance_profile[0].arn == "arn:aws:iam::123456789012:instance-profile/egress-${zone}-profile"
    ])
    error_message = "Each zone's NAT instances must run with that zone's instance profile."
  }

  assert {
    condition = alltrue([
      for zone in ["eu-west-1a", "eu-west-1b"] :
      aws_iam_role.this[zone].name_prefix == "egress-${zone}-" && aws_iam_role_policy.this[zone].name_prefix == "egress-${zone}-" && aws_iam_instance_profile.this[zone].name_prefix == "egress-${zone}-"
    ])
    error_message = "Each zone's role, policy and profile must be named after the zone's group (<name>-<zone>-)."
  }

  assert {
    condition = alltrue(flatten([
      for policy in aws_iam_role_policy.this : [
        for statement in jsondecode(policy.policy).Statement :
        statement.Resource != "*" || alltrue([for action in statement.Action : startswith(split(":", action)[1], "Describe")])
      ]
    ]))
    error_message = "Only Describe* actions may use Resource \"*\"."
  }

  assert {
    condition = alltrue([
      for policy in aws_iam_role_policy.this :
      sort(distinct(flatten([for statement in jsondecode(policy.policy).Statement : statement.Action]))) == tolist([
        "autoscaling:CompleteLifecycleAction",
        "ec2:CreateRoute",
        "ec2:DescribeAddresses",
        "ec2:DescribeInstances",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeRouteTables",
        "ec2:ModifyNetworkInterfaceAttribute",
        "ec2:ReplaceRoute",
      ])
    ])
    error_message = "Without takeover a zone's role may describe, point routes, turn off the source/destination check and complete its launch hook: nothing else (no CloudWatch, no DescribeAutoScalingInstances)."
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this["eu-west-1a"].policy).Statement : statement.Resource
      if contains(statement.Action, "ec2:ReplaceRoute")
      ]) == [
      "arn:aws:ec2:eu-west-1:123456789012:route-table/rtb-0a000001",
      "arn:aws:ec2:eu-west-1:123456789012:route-table/rtb-0a000002",
    ]
    error_message = "CreateRoute/ReplaceRoute of eu-west-1a's role must be limited to eu-west-1a's route tables."
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this["eu-west-1b"].policy).Statement : statement.Resource
      if contains(statement.Action, "ec2:ReplaceRoute")
      ]) == [
      "arn:aws:ec2:eu-west-1:123456789012:route-table/rtb-0b000001",
    ]
    error_message = "CreateRoute/ReplaceRoute of eu-west-1b's role must be limited to eu-west-1b's route table."
  }

  assert {
    condition = alltrue([
      for zone, policy in aws_iam_role_policy.this :
      one([
        for statement in jsondecode(policy.policy).Statement : statement.Resource
        if contains(statement.Action, "ec2:ModifyNetworkInterfaceAttribute")
        ]) == [
        "arn:aws:ec2:eu-west-1:123456789012:instance/*",
        "arn:aws:ec2:eu-west-1:123456789012:network-interface/*",
      ]
    ])
    error_message = "ModifyNetworkInterfaceAttribute must name instances and network interfaces (EC2 may authorize both), narrowed by conditions."
  }

  assert {
    condition = alltrue([
      for zone, policy in aws_iam_role_policy.this :
      one([
        for statement in jsondecode(policy.policy).Statement : statement.Condition
        if contains(statement.Action, "ec2:ModifyNetworkInterfaceAttribute")
        ]) == {
        StringEquals = {
          "ec2:ResourceTag/nat-instance:group" = "egress-${zone}"
          "ec2:Attribute/SourceDestCheck"      = "false"
        }
      }
    ])
    error_message = "ModifyNetworkInterfaceAttribute must require both the zone's own group tag and ec2:Attribute/SourceDestCheck = false (turn the check off, nothing else)."
  }

  assert {
    condition = alltrue([
      for zone, policy in aws_iam_role_policy.this :
      one([
        for statement in jsondecode(policy.policy).Statement : statement.Resource
        if contains(statement.Action, "autoscaling:CompleteLifecycleAction")
      ]) == ["arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/egress-${zone}"]
    ])
    error_message = "CompleteLifecycleAction must be limited to the zone's own group."
  }

  assert {
    condition = alltrue(flatten([
      for policy in aws_iam_role_policy.this : [
        for statement in jsondecode(policy.policy).Statement : !contains(statement.Action, "ec2:AssociateAddress")
      ]
    ]))
    error_message = "Without Elastic IPs the roles must not associate addresses."
  }

  assert {
    condition = alltrue(flatten([
      for policy in aws_iam_role_policy.this : [
        for statement in jsondecode(policy.policy).Statement : !contains(statement.Action, "sns:Publish")
      ]
    ]))
    error_message = "Without a topic the roles must not publish to SNS."
  }

  assert {
    condition     = alltrue([for role in aws_iam_role.this : jsondecode(role.assume_role_policy).Statement[0].Principal.Service == "ec2.amazonaws.com" && length(jsondecode(role.assume_role_policy).Statement) == 1])
    error_message = "Only EC2 may assume the instance roles."
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
      for statement in jsondecode(aws_iam_role_policy.this["eu-west-1a"].policy).Statement : statement.Resource
      if contains(statement.Action, "ec2:AssociateAddress") && !can(statement.Condition)
    ]) == ["arn:aws:ec2:eu-west-1:123456789012:elastic-ip/eipalloc-0a00000c"]
    error_message = "AssociateAddress of eu-west-1a's role must be limited to eu-west-1a's created Elastic IP."
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this["eu-west-1b"].policy).Statement : statement.Resource
      if contains(statement.Action, "ec2:AssociateAddress") && !can(statement.Condition)
    ]) == ["arn:aws:ec2:eu-west-1:123456789012:elastic-ip/eipalloc-0b00000c"]
    error_message = "AssociateAddress of eu-west-1b's role must be limited to eu-west-1b's created Elastic IP."
  }

  assert {
    condition = alltrue([
      for zone, policy in aws_iam_role_policy.this :
      one([
        for statement in jsondecode(policy.policy).Statement :
        statement.Condition.StringEquals["ec2:ResourceTag/nat-instance:group"]
        if contains(statement.Action, "ec2:AssociateAddress") && can(statement.Condition)
      ]) == "egress-${zone}"
    ])
    error_message = "AssociateAddress must require the target instance or interface to carry the zone's own group tag."
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
    condition = alltrue([
      for zone, policy in aws_iam_role_policy.this :
      one([
        for statement in jsondecode(policy.policy).Statement : statement.Resource
        if contains(statement.Action, "ec2:AssociateAddress") && !can(statement.Condition)
      ]) == ["arn:aws:ec2:eu-west-1:123456789012:elastic-ip/${var.zones[zone].eip_allocation_id}"]
    ])
    error_message = "AssociateAddress of each zone's role must be limited to that zone's given Elastic IP."
  }
}

run "without_alarm_and_hook_the_role_cannot_touch_them" {
  command = plan

  variables {
    status_check_alarm        = false
    launch_lifecycle_hook     = false
    warm_pool                 = null
    health_check_grace_period = 120
  }

  assert {
    condition = alltrue(flatten([
      for policy in aws_iam_role_policy.this : [
        for statement in jsondecode(policy.policy).Statement :
        !contains(statement.Action, "autoscaling:CompleteLifecycleAction") && length([for action in statement.Action : action if startswith(action, "cloudwatch:")]) == 0
      ]
    ]))
    error_message = "Without alarms and hook, the roles must not be allowed any CloudWatch action or CompleteLifecycleAction."
  }
}

run "topic_lets_each_role_publish_to_it_only" {
  command = plan

  variables {
    notification_topic_arn = "arn:aws:sns:eu-west-1:123456789012:nat-events"
  }

  assert {
    condition = alltrue([
      for policy in aws_iam_role_policy.this :
      one([
        for statement in jsondecode(policy.policy).Statement : statement.Resource
        if contains(statement.Action, "sns:Publish")
      ]) == ["arn:aws:sns:eu-west-1:123456789012:nat-events"]
    ])
    error_message = "With a topic, each role may publish to notification_topic_arn and no other topic."
  }

  assert {
    condition = alltrue(flatten([
      for policy in aws_iam_role_policy.this : [
        for statement in jsondecode(policy.policy).Statement :
        !contains(statement.Action, "sns:Publish") || statement.Action == ["sns:Publish"]
      ]
    ]))
    error_message = "The topic statement must allow sns:Publish only."
  }

  assert {
    condition = alltrue(flatten([
      for policy in aws_iam_role_policy.this : [
        for statement in jsondecode(policy.policy).Statement :
        length([for action in statement.Action : action if startswith(action, "cloudwatch:")]) == 0
      ]
    ]))
    error_message = "With a topic and alarms, the roles must still have no CloudWatch action: the alarms are Terraform's alone."
  }
}

run "ssm_access_attaches_the_managed_policy" {
  command = plan

  variables {
    ssm_access                    = true
    iam_role_permissions_boundary = "arn:aws:iam::123456789012:policy/boundary"
  }

  assert {
    condition = keys(aws_iam_role_policy_attachment.ssm) == ["eu-west-1a", "eu-west-1b"] && alltrue([
      for zone, attachment in aws_iam_role_policy_attachment.ssm :
      attachment.policy_arn == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore" && attachment.role == "egress-${zone}-role"
    ])
    error_message = "ssm_access must attach AmazonSSMManagedInstanceCore to every zone's role."
  }

  assert {
    condition     = alltrue([for role in aws_iam_role.this : role.permissions_boundary == "arn:aws:iam::123456789012:policy/boundary"])
    error_message = "iam_role_permissions_boundary must be set on every zone's role."
  }
}

run "takeover_reaches_this_modules_tables_and_groups_only" {
  command = plan

  assert {
    condition = alltrue([
      for policy in aws_iam_role_policy.this :
      one([
        for statement in jsondecode(policy.policy).Statement : statement
        if statement.Sid == "TakeOverPeerZonesRoutes"
        ]) == {
        Sid    = "TakeOverPeerZonesRoutes"
        Effect = "Allow"
        Action = ["ec2:ReplaceRoute"]
        Resource = [
          "arn:aws:ec2:eu-west-1:123456789012:route-table/rtb-0a000001",
          "arn:aws:ec2:eu-west-1:123456789012:route-table/rtb-0a000002",
          "arn:aws:ec2:eu-west-1:123456789012:route-table/rtb-0b000001",
        ]
      }
    ])
    error_message = "With takeover each role may ReplaceRoute (not CreateRoute) on every route table of this module, and on no other."
  }

  assert {
    condition = alltrue([
      for policy in aws_iam_role_policy.this :
      one([
        for statement in jsondecode(policy.policy).Statement : statement.Resource
        if contains(statement.Action, "autoscaling:SetInstanceHealth")
        ]) == [
        "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/egress-eu-west-1a",
        "arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/egress-eu-west-1b",
      ]
    ])
    error_message = "With takeover SetInstanceHealth must be limited to this module's groups, by ARN."
  }

  assert {
    condition = alltrue([
      for policy in aws_iam_role_policy.this :
      sort(distinct(flatten([for statement in jsondecode(policy.policy).Statement : statement.Action]))) == tolist([
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:SetInstanceHealth",
        "ec2:CreateRoute",
        "ec2:DescribeAddresses",
        "ec2:DescribeInstanceStatus",
        "ec2:DescribeInstances",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeRouteTables",
        "ec2:ModifyNetworkInterfaceAttribute",
        "ec2:ReplaceRoute",
      ])
    ])
    error_message = "Takeover adds exactly DescribeInstanceStatus and SetInstanceHealth to a role's actions."
  }

  assert {
    condition = length([
      for rule in aws_security_group.this.ingress : rule
      if rule.protocol == "udp" && rule.from_port == 4789 && rule.to_port == 4789 && rule.self == true && try(length(rule.cidr_blocks), 0) == 0
    ]) == 1
    error_message = "With takeover the NATs' group must accept VXLAN (UDP 4789) from itself only."
  }
}

run "takeover_with_one_zone_adds_nothing" {
  command = plan

  variables {
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" } }
    }
  }

  assert {
    condition = alltrue(flatten([
      for policy in aws_iam_role_policy.this : [
        for statement in jsondecode(policy.policy).Statement :
        !contains(statement.Action, "autoscaling:SetInstanceHealth") && !contains(statement.Action, "ec2:DescribeInstanceStatus")
      ]
    ]))
    error_message = "With one zone there is no peer to take over: no takeover permission."
  }

  assert {
    condition     = length([for rule in aws_security_group.this.ingress : rule if rule.protocol == "udp"]) == 0
    error_message = "With one zone the NATs' group needs no VXLAN rule."
  }
}

run "standby_roles_stay_in_their_zone" {
  command = plan

  variables {
    takeover   = "standby"
    elastic_ip = "create"
  }

  assert {
    condition     = keys(aws_iam_role_policy.this) == ["eu-west-1a", "eu-west-1a-standby", "eu-west-1b", "eu-west-1b-standby"]
    error_message = "With a standby every zone has two roles: its NAT's and its standby's (tests/test_iam_policy.py lints both)."
  }
}
