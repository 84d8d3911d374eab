# Routes, groups and security group: one NAT per zone, every private route
# table of a zone routed through that zone's NAT.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

# Known IDs for the placeholder interfaces, so routes can be compared to them.
override_resource {
  target          = aws_network_interface.route_placeholder["eu-west-1a"]
  override_during = plan
  values          = { id = "eni-0a000001" }
}

override_resource {
  target          = aws_network_interface.route_placeholder["eu-west-1b"]
  override_during = plan
  values          = { id = "eni-0b000001" }
}

override_resource {
  target          = aws_network_interface.route_placeholder["eu-west-1c"]
  override_during = plan
  values          = { id = "eni-0c000001" }
}

variables {
  zones = {
    "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" } }
  }
}

run "one_zone_routes_its_table_through_a_placeholder_interface" {
  command = plan

  assert {
    condition     = keys(aws_autoscaling_group.this) == ["eu-west-1a"]
    error_message = "One zone must give exactly one Auto Scaling group."
  }

  assert {
    condition     = keys(aws_route.private_default) == ["eu-west-1a/main"]
    error_message = "Routes must be keyed <zone>/<route table key>."
  }

  assert {
    condition     = aws_route.private_default["eu-west-1a/main"].route_table_id == "rtb-0a000001"
    error_message = "The route must be in the zone's private route table."
  }

  assert {
    condition     = aws_route.private_default["eu-west-1a/main"].destination_cidr_block == "0.0.0.0/0"
    error_message = "The default route_destination_cidr is 0.0.0.0/0."
  }

  assert {
    condition     = aws_route.private_default["eu-west-1a/main"].network_interface_id == "eni-0a000001"
    error_message = "Before the first boot the route must target the zone's placeholder interface."
  }

  assert {
    condition     = aws_network_interface.route_placeholder["eu-west-1a"].subnet_id == "subnet-0a000001"
    error_message = "The placeholder interface must be in the zone's public subnet."
  }
}

run "three_zones_route_each_table_through_its_own_zone" {
  command = plan

  variables {
    zones = {
      "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { app = "rtb-0a000001", db = "rtb-0a000002" } }
      "eu-west-1b" = { public_subnet_id = "subnet-0b000001", private_route_tables = { db = "rtb-0b000002", app = "rtb-0b000001" } }
      "eu-west-1c" = { public_subnet_id = "subnet-0c000001", private_route_tables = { main = "rtb-0c000001" } }
    }
  }

  assert {
    condition     = length(aws_autoscaling_group.this) == 3 && length(aws_launch_template.this) == 3 && length(aws_network_interface.route_placeholder) == 3
    error_message = "Three zones must give three groups, launch templates and placeholder interfaces."
  }

  assert {
    condition     = length(aws_route.private_default) == 5
    error_message = "Five private route tables must give five routes."
  }

  assert {
    condition     = sort(keys(aws_route.private_default)) == tolist(["eu-west-1a/app", "eu-west-1a/db", "eu-west-1b/app", "eu-west-1b/db", "eu-west-1c/main"])
    error_message = "Routes must be keyed <zone>/<route table key>, not by route table ID or list position."
  }

  assert {
    condition = alltrue([
      for key, route in aws_route.private_default :
      route.network_interface_id == aws_network_interface.route_placeholder[split("/", key)[0]].id && route.route_table_id == var.zones[split("/", key)[0]].private_route_tables[split("/", key)[1]]
    ])
    error_message = "Each route must be in its own table and target its own zone's placeholder interface."
  }

  assert {
    condition = alltrue([
      for zone, asg in aws_autoscaling_group.this :
      asg.min_size == 1 && asg.max_size == 1 && asg.desired_capacity == 1 && asg.name == "egress-${zone}"
    ])
    error_message = "Each group must be named <name>-<zone> and hold exactly one instance."
  }

  assert {
    condition = alltrue([
      for zone, asg in aws_autoscaling_group.this : tolist(asg.vpc_zone_identifier) == tolist([var.zones[zone].public_subnet_id])
    ])
    error_message = "Each group must launch into its own zone's public subnet only."
  }

  assert {
    condition = strcontains(
      output.rendered_user_data["eu-west-1b"],
      "rtb-0b000001 rtb-0b000002"
    )
    error_message = "The user data of a zone must list that zone's route tables, space separated, in lexical order of their keys."
  }

  assert {
    condition     = regex("NAT_ROUTE_TABLE_IDS='([^']*)'", output.rendered_user_data["eu-west-1b"])[0] == "rtb-0b000001 rtb-0b000002"
    error_message = "The tables a zone's NAT points at itself at boot (NAT_ROUTE_TABLE_IDS) must be that zone's only; other zones' appear only in NAT_PEERS, for takeover."
  }

  assert {
    condition     = strcontains(output.rendered_user_data["eu-west-1b"], "NAT_PEERS='eu-west-1a:egress-eu-west-1a:rtb-0a000001,rtb-0a000002 eu-west-1b:egress-eu-west-1b:rtb-0b000001,rtb-0b000002 ")
    error_message = "With takeover every zone's NAT knows every zone's group and tables, sorted by zone (NAT_PEERS)."
  }
}

run "routes_a_custom_destination" {
  command = plan

  variables {
    route_destination_cidr = "192.0.2.0/24"
  }

  assert {
    condition     = aws_route.private_default["eu-west-1a/main"].destination_cidr_block == "192.0.2.0/24"
    error_message = "Routes must use route_destination_cidr."
  }

  assert {
    condition     = strcontains(output.rendered_user_data["eu-west-1a"], "192.0.2.0/24")
    error_message = "The boot script must be told route_destination_cidr."
  }
}

run "serves_every_associated_vpc_cidr_by_default" {
  command = plan

  assert {
    condition     = length(aws_security_group.this.ingress) == 1
    error_message = "The security group must have exactly one ingress rule, from the served CIDR blocks."
  }

  assert {
    condition     = one(aws_security_group.this.ingress).cidr_blocks == tolist(["10.0.0.0/16", "100.64.0.0/16"])
    error_message = "Without served_cidrs, the NAT must accept the VPC's associated CIDR blocks (and not disassociated ones)."
  }

  assert {
    condition     = one(aws_security_group.this.ingress).protocol == "-1"
    error_message = "Ingress from served CIDR blocks must allow every protocol."
  }

  assert {
    condition     = strcontains(output.rendered_user_data["eu-west-1a"], "10.0.0.0/16 100.64.0.0/16")
    error_message = "The boot script must masquerade the VPC's CIDR blocks."
  }
}

run "serves_only_the_given_cidrs" {
  command = plan

  variables {
    served_cidrs = ["10.0.16.0/20"]
  }

  assert {
    condition     = one(aws_security_group.this.ingress).cidr_blocks == tolist(["10.0.16.0/20"])
    error_message = "served_cidrs must replace the VPC's CIDR blocks in the security group."
  }

  assert {
    condition     = one(aws_security_group.this.egress).cidr_blocks == tolist(["0.0.0.0/0"]) && one(aws_security_group.this.egress).protocol == "-1"
    error_message = "The NAT must be allowed to send anything anywhere."
  }
}

run "replaces_the_instance_by_launching_first" {
  command = plan

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1a"].instance_refresh[0].preferences[0].min_healthy_percentage == 100
    error_message = "An instance refresh must keep the old NAT in service until its replacement is up."
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1a"].instance_refresh[0].preferences[0].max_healthy_percentage == 200
    error_message = "An instance refresh must be allowed to launch the replacement before terminating."
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1a"].instance_maintenance_policy[0].min_healthy_percentage == 100 && aws_autoscaling_group.this["eu-west-1a"].instance_maintenance_policy[0].max_healthy_percentage == 200
    error_message = "A health replacement must launch the new NAT before terminating the impaired one (instance maintenance policy 100 % / 200 %)."
  }

  assert {
    condition     = aws_autoscaling_group.this["eu-west-1a"].health_check_type == "EC2" && aws_autoscaling_group.this["eu-west-1a"].health_check_grace_period == 0
    error_message = "Groups must use EC2 health checks, with no grace period on top of the launch hook by default."
  }
}
