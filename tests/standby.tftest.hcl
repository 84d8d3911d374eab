# Standby (takeover = "standby"): every zone gets a second group of one, whose
# instance watches the zone's NAT and takes its routes over; the zones' NATs do
# not watch each other. Its role may replace only its zone's routes and mark
# only its zone's group; its config says role=standby.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

variables {
  zones = {
    "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { app = "rtb-0a000001", db = "rtb-0a000002" } }
    "eu-west-1b" = { public_subnet_id = "subnet-0b000001", private_route_tables = { main = "rtb-0b000001" } }
  }
  elastic_ip = "create"
}

run "no_standby_group_without_standby" {
  command = plan

  assert {
    condition     = keys(aws_autoscaling_group.this) == ["eu-west-1a", "eu-west-1b"] && length(output.standby_autoscaling_group_names) == 0
    error_message = "Only takeover = \"standby\" adds a standby group."
  }

  assert {
    condition     = alltrue([for text in values(output.rendered_user_data) : strcontains(text, "NAT_ROLE='active'")])
    error_message = "Without a standby every instance is its zone's active NAT."
  }
}

run "every_zone_gets_a_standby_group_of_one" {
  command = plan

  variables {
    takeover = "standby"
  }

  assert {
    condition     = keys(aws_autoscaling_group.this) == ["eu-west-1a", "eu-west-1a-standby", "eu-west-1b", "eu-west-1b-standby"]
    error_message = "With a standby every zone has two groups: <zone> and <zone>-standby."
  }

  assert {
    condition = alltrue([
      for zone, subnet in { "eu-west-1a" = "subnet-0a000001", "eu-west-1b" = "subnet-0b000001" } :
      aws_autoscaling_group.this["${zone}-standby"].name == "egress-${zone}-standby" &&
      aws_autoscaling_group.this["${zone}-standby"].max_size == 1 && aws_autoscaling_group.this["${zone}-standby"].min_size == 1 &&
      length(aws_autoscaling_group.this["${zone}-standby"].vpc_zone_identifier) == 1 && contains(aws_autoscaling_group.this["${zone}-standby"].vpc_zone_identifier, subnet)
    ])
    error_message = "A standby group is one instance, named <name>-<zone>-standby, in its zone's public subnet."
  }

  assert {
    condition     = output.standby_autoscaling_group_names == tomap({ "eu-west-1a" = "egress-eu-west-1a-standby", "eu-west-1b" = "egress-eu-west-1b-standby" })
    error_message = "standby_autoscaling_group_names must name each zone's standby group."
  }

  assert {
    condition     = output.autoscaling_group_names == tomap({ "eu-west-1a" = "egress-eu-west-1a", "eu-west-1b" = "egress-eu-west-1b" })
    error_message = "autoscaling_group_names stays the zones' own (active) groups."
  }

  assert {
    condition = alltrue([
      for zone in ["eu-west-1a", "eu-west-1b"] :
      strcontains(output.rendered_user_data["${zone}-standby"], "NAT_ROLE='standby'") &&
      strcontains(output.rendered_user_data["${zone}-standby"], "NAT_TAKEOVER='standby'") &&
      strcontains(output.rendered_user_data["${zone}-standby"], "NAT_ASG_NAME='egress-${zone}-standby'") &&
      strcontains(output.rendered_user_data[zone], "NAT_ROLE='active'") &&
      strcontains(output.rendered_user_data[zone], "NAT_PEERS=''")
    ])
    error_message = "A standby's config says role=standby and its own group; the zone's NAT says role=active and watches no peer."
  }

  assert {
    condition = (
      strcontains(output.rendered_user_data["eu-west-1a-standby"], "NAT_PEERS='eu-west-1a:egress-eu-west-1a:rtb-0a000001,rtb-0a000002'") &&
      strcontains(output.rendered_user_data["eu-west-1b-standby"], "NAT_PEERS='eu-west-1b:egress-eu-west-1b:rtb-0b000001'")
    )
    error_message = "A standby watches its own zone's group and tables only."
  }

  assert {
    condition     = one([for rule in aws_security_group.this.ingress : rule if rule.protocol == "udp"]).self == true
    error_message = "The standby's probe tunnel to its zone's NAT needs the VXLAN self rule (UDP 4789)."
  }

  assert {
    condition     = length(aws_autoscaling_group.this["eu-west-1a-standby"].warm_pool) == 0
    error_message = "A standby group keeps no warm pool."
  }
}

run "a_standby_may_take_over_only_its_own_zone" {
  command = plan

  variables {
    takeover = "standby"
  }

  assert {
    condition = alltrue([
      for zone in ["eu-west-1a", "eu-west-1b"] :
      sort(distinct(flatten([for statement in jsondecode(aws_iam_role_policy.this["${zone}-standby"].policy).Statement : statement.Action]))) == tolist([
        "autoscaling:CompleteLifecycleAction",
        "autoscaling:SetInstanceHealth",
        "ec2:AssociateAddress",
        "ec2:DescribeAddresses",
        "ec2:DescribeInstanceStatus",
        "ec2:DescribeInstances",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeRouteTables",
        "ec2:ModifyNetworkInterfaceAttribute",
        "ec2:ReplaceRoute",
      ])
    ])
    error_message = "A standby's role: describe, replace routes, mark its NAT, move the Elastic IP, its own check and hook; no CreateRoute."
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this["eu-west-1a-standby"].policy).Statement : statement.Resource
      if contains(statement.Action, "ec2:ReplaceRoute")
      ]) == [
      "arn:aws:ec2:eu-west-1:123456789012:route-table/rtb-0a000001",
      "arn:aws:ec2:eu-west-1:123456789012:route-table/rtb-0a000002",
    ]
    error_message = "ReplaceRoute of eu-west-1a's standby must be limited to eu-west-1a's route tables."
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this["eu-west-1b-standby"].policy).Statement : statement.Resource
      if contains(statement.Action, "autoscaling:SetInstanceHealth")
    ]) == ["arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:*:autoScalingGroupName/egress-eu-west-1b"]
    error_message = "SetInstanceHealth of eu-west-1b's standby must be limited to eu-west-1b's own NAT group."
  }

  assert {
    condition = one([
      for statement in jsondecode(aws_iam_role_policy.this["eu-west-1a-standby"].policy).Statement : statement.Condition
      if contains(statement.Action, "ec2:ModifyNetworkInterfaceAttribute")
    ]).StringEquals["ec2:ResourceTag/nat-instance:group"] == "egress-eu-west-1a-standby"
    error_message = "A standby turns off the check on its own interface only (tagged with its own group)."
  }

  assert {
    condition = alltrue([
      for zone in ["eu-west-1a", "eu-west-1b"] :
      alltrue([for statement in jsondecode(aws_iam_role_policy.this[zone].policy).Statement : !contains(statement.Action, "autoscaling:SetInstanceHealth")])
    ])
    error_message = "With a standby the zones' NATs do not watch each other: no SetInstanceHealth for them."
  }
}
