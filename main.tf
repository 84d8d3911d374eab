locals {
  partition = data.aws_partition.current.partition
  # From the VPC's ARN (arn:PARTITION:ec2:REGION:OWNER:vpc/ID): hashicorp/aws 5.x has no
  # aws_region.region and 6.x deprecates .name (and .id from 6.47); an ARN reads the same on both.
  region     = split(":", data.aws_vpc.this.arn)[3]
  account_id = data.aws_caller_identity.current.account_id

  # The tag the launch template puts on each instance and its network
  # interface. The instance role may modify only interfaces that carry it.
  group_tag_key = "nat-instance:group"

  asg_names           = { for zone in keys(var.zones) : zone => "${var.name}-${zone}" }
  alarm_names         = var.status_check_alarm ? { for zone in keys(var.zones) : zone => "${var.name}-${zone}-status-check" } : {}
  lifecycle_hook_name = var.launch_lifecycle_hook ? "${var.name}-launch" : null

  vpc_cidrs = distinct(concat(
    [data.aws_vpc.this.cidr_block],
    [for association in data.aws_vpc.this.cidr_block_associations : association.cidr_block if association.state == "associated"],
  ))
  served_cidrs = length(var.served_cidrs) > 0 ? var.served_cidrs : local.vpc_cidrs

  eip_allocation_ids = {
    none     = {}
    create   = { for zone, eip in aws_eip.this : zone => eip.allocation_id }
    existing = { for zone, config in var.zones : zone => config.eip_allocation_id }
  }[var.elastic_ip]

  # Takeover (README, "Seconds-level failover"): every zone's NAT knows every
  # zone's group and route tables, "zone:group:rtb,rtb" sorted by zone; the
  # timings are the watcher's (seconds). One zone has no peer to watch.
  takeover_on = var.takeover == "peers" && length(var.zones) > 1
  takeover_zone_peers = {
    for zone in keys(var.zones) : zone => "${zone}:${local.asg_names[zone]}:${join(",", values(var.zones[zone].private_route_tables))}"
  }
  takeover_peers = join(" ", [for zone in sort(keys(var.zones)) : local.takeover_zone_peers[zone]])

  # Every group of one instance: each zone's NAT and, with takeover = "standby", the zone's standby
  # (README, "Standby"), keyed "<zone>-standby". Role, launch template and group are per group.
  standby_on        = var.takeover == "standby"
  standby_asg_names = local.standby_on ? { for zone in keys(var.zones) : zone => "${var.name}-${zone}-standby" } : {}
  groups = merge(
    { for zone, name in local.asg_names : zone => { zone = zone, role = "active", name = name } },
    { for zone, name in local.standby_asg_names : "${zone}-standby" => { zone = zone, role = "standby", name = name } },
  )
  takeover_probe_target = coalesce(var.takeover_probe_target, "ec2.${local.region}.amazonaws.com:443")

  # Exactly the template variables of userdata/user-data.sh.tftpl (see
  # docs/design.md): plain strings, lists joined with one space, "" for "off".
  # values() lists a zone's route table IDs in lexical order of their keys.
  user_data_vars = {
    for key, group in local.groups : key => {
      zone                   = group.zone
      asg_name               = group.name
      route_table_ids        = join(" ", values(var.zones[group.zone].private_route_tables))
      route_destination      = var.route_destination_cidr
      served_cidrs           = join(" ", local.served_cidrs)
      eip_allocation_id      = lookup(local.eip_allocation_ids, group.zone, "")
      lifecycle_hook_name    = var.launch_lifecycle_hook ? local.lifecycle_hook_name : ""
      notification_topic_arn = var.notification_topic_arn == null ? "" : var.notification_topic_arn
      metrics_namespace      = var.metrics_namespace == null ? "" : var.metrics_namespace
      takeover               = local.standby_on ? "standby" : local.takeover_on ? "peers" : "off"
      role                   = group.role
      peers                  = local.takeover_on ? local.takeover_peers : group.role == "standby" ? local.takeover_zone_peers[group.zone] : ""
      probe_target           = local.takeover_on || group.role == "standby" ? local.takeover_probe_target : ""
      boot_script            = file("${path.module}/userdata/nat-boot.sh")
    }
  }

  # What each zone's instances boot: the rendering without its whole-line comments (never a "#!"
  # line), sent gzip-compressed: EC2 takes 16 KB of user data at most, and the commented script
  # alone is several times that (natlab/module/user_data_payload.py applies the same rule).
  user_data_text = {
    for key, vars in local.user_data_vars : key => replace(
      templatefile("${path.module}/userdata/user-data.sh.tftpl", vars), "/(?m)^[ \\t]*#([^!\\n].*)?\\n/", ""
    )
  }
}

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

data "aws_subnet" "public" {
  for_each = var.zones

  id = each.value.public_subnet_id

  lifecycle {
    postcondition {
      condition     = self.availability_zone == each.key
      error_message = "zones[\"${each.key}\"].public_subnet_id (${self.id}) is in ${self.availability_zone}, not ${each.key}: key each zone by its subnet's availability zone."
    }

    postcondition {
      condition     = self.vpc_id == var.vpc_id
      error_message = "zones[\"${each.key}\"].public_subnet_id (${self.id}) belongs to ${self.vpc_id}, not to vpc_id ${var.vpc_id}."
    }
  }
}

################################################################################
# Elastic IPs
################################################################################

resource "aws_eip" "this" {
  #checkov:skip=CKV2_AWS_19: The boot script of each new NAT instance associates the address; Terraform never sees an attachment.
  for_each = var.elastic_ip == "create" ? var.zones : {}

  domain = "vpc"

  tags = merge(var.tags, { Name = "${var.name}-${each.key}" })
}

data "aws_eip" "existing" {
  for_each = var.elastic_ip == "existing" ? var.zones : {}

  id = each.value.eip_allocation_id
}

################################################################################
# IAM
################################################################################

locals {
  arn_prefix = {
    ec2         = "arn:${local.partition}:ec2:${local.region}:${local.account_id}"
    autoscaling = "arn:${local.partition}:autoscaling:${local.region}:${local.account_id}"
  }

  # One role per group: a NAT can touch only its own zone's route tables,
  # Elastic IP, interfaces and group, never another zone's; a standby only
  # what its takeover needs. Built with
  # jsonencode rather than data "aws_iam_policy_document" so that `terraform
  # test` with a mocked provider sees the real document. Only read-only
  # Describe* calls, which support no resource scoping, use "*".
  iam_policy_statements = { for key, group in local.groups : key => [for candidate in [
    {
      wanted = true
      statement = {
        Sid    = "DescribeOnly"
        Effect = "Allow"
        Action = [
          "ec2:DescribeAddresses",
          "ec2:DescribeInstances",
          "ec2:DescribeNetworkInterfaces",
          "ec2:DescribeRouteTables",
        ]
        Resource = "*"
      }
    },
    {
      # A peer's state and status checks before a takeover; read-only, so
      # like the other Describe* calls it supports no resource scoping.
      wanted = local.takeover_on || group.role == "standby"
      statement = {
        Sid      = "DescribePeerStatus"
        Effect   = "Allow"
        Action   = ["ec2:DescribeInstanceStatus"]
        Resource = "*"
      }
    },
    {
      # Takeover: this module's route tables, of every zone, and nothing else.
      wanted = local.takeover_on
      statement = {
        Sid      = "TakeOverPeerZonesRoutes"
        Effect   = "Allow"
        Action   = ["ec2:ReplaceRoute"]
        Resource = sort(distinct([for route in values(local.private_routes) : "${local.arn_prefix.ec2}:route-table/${route.route_table_id}"]))
      }
    },
    {
      # SetInstanceHealth requires the autoScalingGroup resource type, so it
      # is scoped by group ARN: only this module's groups (Service
      # Authorization Reference, "Actions, resources, and condition keys for
      # Amazon EC2 Auto Scaling", docs.aws.amazon.com/service-authorization/
      # latest/reference/list_amazonec2autoscaling.html).
      wanted = local.takeover_on
      statement = {
        Sid      = "MarkPeerUnhealthyInOwnGroups"
        Effect   = "Allow"
        Action   = ["autoscaling:SetInstanceHealth"]
        Resource = sort([for name in values(local.asg_names) : "${local.arn_prefix.autoscaling}:autoScalingGroup:*:autoScalingGroupName/${name}"])
      }
    },
    {
      # A standby's takeover: its zone's NAT, and nothing else.
      wanted = group.role == "standby"
      statement = {
        Sid      = "MarkOwnZonesNatUnhealthy"
        Effect   = "Allow"
        Action   = ["autoscaling:SetInstanceHealth"]
        Resource = ["${local.arn_prefix.autoscaling}:autoScalingGroup:*:autoScalingGroupName/${local.asg_names[group.zone]}"]
      }
    },
    {
      # The routes exist (Terraform made them): a standby only replaces their target.
      wanted = true
      statement = {
        Sid      = group.role == "standby" ? "TakeOverOwnZonesPrivateRoutes" : "PointOwnZonesPrivateRoutesAtThisInstance"
        Effect   = "Allow"
        Action   = group.role == "standby" ? ["ec2:ReplaceRoute"] : ["ec2:CreateRoute", "ec2:ReplaceRoute"]
        Resource = sort([for rtb in values(var.zones[group.zone].private_route_tables) : "${local.arn_prefix.ec2}:route-table/${rtb}"])
      }
    },
    {
      # EC2 may authorize the attached instance as well as the interface;
      # both carry the group tag from the launch template. Only the
      # source/destination check may be changed, and only turned off.
      wanted = true
      statement = {
        Sid      = "DisableSourceDestCheckOnOwnInterface"
        Effect   = "Allow"
        Action   = ["ec2:ModifyNetworkInterfaceAttribute"]
        Resource = ["${local.arn_prefix.ec2}:instance/*", "${local.arn_prefix.ec2}:network-interface/*"]
        Condition = {
          StringEquals = {
            "ec2:ResourceTag/${local.group_tag_key}" = group.name
            "ec2:Attribute/SourceDestCheck"          = "false"
          }
        }
      }
    },
    {
      wanted = contains(keys(local.eip_allocation_ids), group.zone)
      statement = {
        Sid      = "AssociateOwnZonesElasticIp"
        Effect   = "Allow"
        Action   = ["ec2:AssociateAddress"]
        Resource = ["${local.arn_prefix.ec2}:elastic-ip/${lookup(local.eip_allocation_ids, group.zone, "")}"]
      }
    },
    {
      wanted = contains(keys(local.eip_allocation_ids), group.zone)
      statement = {
        Sid       = "AssociateElasticIpWithOwnInterface"
        Effect    = "Allow"
        Action    = ["ec2:AssociateAddress"]
        Resource  = ["${local.arn_prefix.ec2}:instance/*", "${local.arn_prefix.ec2}:network-interface/*"]
        Condition = { StringEquals = { "ec2:ResourceTag/${local.group_tag_key}" = group.name } }
      }
    },
    {
      # A NAT with a standby hands the zone's Elastic IP to it at a Spot interruption notice.
      wanted = contains(keys(local.eip_allocation_ids), group.zone) && group.role == "active" && local.standby_on
      statement = {
        Sid       = "HandElasticIpToOwnZonesStandby"
        Effect    = "Allow"
        Action    = ["ec2:AssociateAddress"]
        Resource  = ["${local.arn_prefix.ec2}:network-interface/*"]
        Condition = { StringEquals = { "ec2:ResourceTag/${local.group_tag_key}" = lookup(local.standby_asg_names, group.zone, "") } }
      }
    },
    {
      wanted = var.launch_lifecycle_hook
      statement = {
        Sid      = "CompleteOwnLaunchLifecycleAction"
        Effect   = "Allow"
        Action   = ["autoscaling:CompleteLifecycleAction"]
        Resource = ["${local.arn_prefix.autoscaling}:autoScalingGroup:*:autoScalingGroupName/${group.name}"]
      }
    },
    {
      # PutMetricData has no resource type: the namespace condition key is what scopes it.
      # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html
      wanted = var.metrics_namespace != null
      statement = {
        Sid       = "PublishOwnMetrics"
        Effect    = "Allow"
        Action    = ["cloudwatch:PutMetricData"]
        Resource  = ["*"]
        Condition = { StringEquals = { "cloudwatch:namespace" = coalesce(var.metrics_namespace, "-") } }
      }
    },
    {
      wanted = var.notification_topic_arn != null
      statement = {
        Sid      = "NotifyFailuresAfterTakeover"
        Effect   = "Allow"
        Action   = ["sns:Publish"]
        Resource = var.notification_topic_arn == null ? [] : [var.notification_topic_arn]
      }
    },
  ] : candidate.statement if candidate.wanted] }
}

resource "aws_iam_role" "this" {
  for_each = local.groups

  name_prefix          = "${each.value.name}-"
  description          = "NAT instances of ${each.value.name}: point the zone's private routes and Elastic IP at themselves."
  permissions_boundary = var.iam_role_permissions_boundary

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect    = "Allow"
        Principal = { Service = "ec2.amazonaws.com" }
        Action    = "sts:AssumeRole"
      },
    ]
  })

  tags = merge(var.tags, { Name = each.value.name })
}

resource "aws_iam_role_policy" "this" {
  for_each = local.groups

  name_prefix = "${each.value.name}-"
  role        = aws_iam_role.this[each.key].id

  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = local.iam_policy_statements[each.key]
  })
}

resource "aws_iam_role_policy_attachment" "ssm" {
  for_each = var.ssm_access ? local.groups : {}

  role       = aws_iam_role.this[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "this" {
  for_each = local.groups

  name_prefix = "${each.value.name}-"
  role        = aws_iam_role.this[each.key].name

  tags = merge(var.tags, { Name = each.value.name })
}

################################################################################
# Security group
################################################################################

# Rules are inline rather than one aws_vpc_security_group_ingress_rule per
# CIDR block: the served CIDR blocks default to the VPC's, which are unknown at
# plan time when the VPC is created in the same apply, and for_each cannot
# iterate over an unknown list. cidr_blocks can hold an unknown list.
resource "aws_security_group" "this" {
  name_prefix = "${var.name}-"
  description = "NAT instances of ${var.name}: accept any traffic from the served CIDR blocks, send anywhere."
  vpc_id      = var.vpc_id

  ingress {
    description = "Traffic to translate, from the served CIDR blocks"
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    cidr_blocks = local.served_cidrs
  }

  dynamic "ingress" {
    for_each = local.takeover_on || local.standby_on ? ["vxlan"] : []

    content {
      description = "Takeover probes: VXLAN tunnels between the NATs of this group (UDP 4789)"
      protocol    = "udp"
      from_port   = 4789
      to_port     = 4789
      self        = true
    }
  }

  egress {
    #checkov:skip=CKV_AWS_382: A NAT forwards whatever its clients send, to any address, on any protocol.
    description = "Translated traffic to anywhere, and the AWS API calls of the boot script"
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    cidr_blocks = ["0.0.0.0/0"]
  }

  tags = merge(var.tags, { Name = var.name })

  lifecycle {
    create_before_destroy = true
  }
}

################################################################################
# Launch template
################################################################################

locals {
  architecture = contains(data.aws_ec2_instance_type.this.supported_architectures, "arm64") ? "arm64" : "x86_64"

  # instance_types, or instance_type alone; each type's architecture, for the one-architecture rule.
  instance_types = length(var.instance_types) > 0 ? var.instance_types : [var.instance_type]
  type_architectures = {
    for type, found in data.aws_ec2_instance_type.allowed : type => contains(found.supported_architectures, "arm64") ? "arm64" : "x86_64"
  }

  # Size of the AMI's root snapshot: the root volume is declared (to encrypt
  # it and make it gp3) and must not be smaller.
  ami_root_volume_size = one([
    for mapping in data.aws_ami.this.block_device_mappings : tonumber(lookup(mapping.ebs, "volume_size", null))
    if mapping.device_name == data.aws_ami.this.root_device_name
  ])
}

data "aws_ec2_instance_type" "this" {
  instance_type = local.instance_types[0]
}

# Every type the group may launch: one architecture, so one AMI serves them all.
data "aws_ec2_instance_type" "allowed" {
  for_each = toset(local.instance_types)

  instance_type = each.key
}

# The default image is Amazon Linux 2023 on its default kernel line, as AWS
# publishes it in SSM. It is resolved once and then held: a new release
# (about every two weeks) must not replace every NAT on an apply that changed
# nothing. Changing ami_refresh_key (or the architecture) resolves it again.
data "aws_ssm_parameter" "al2023" {
  count = var.ami_id == null ? 1 : 0

  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${local.architecture}"
}

resource "terraform_data" "default_ami" {
  count = var.ami_id == null ? 1 : 0

  input            = one(data.aws_ssm_parameter.al2023[*].insecure_value)
  triggers_replace = [var.ami_refresh_key, local.architecture]

  lifecycle {
    ignore_changes = [input]
  }
}

data "aws_ami" "this" {
  filter {
    name   = "image-id"
    values = [coalesce(var.ami_id, one(terraform_data.default_ami[*].output))]
  }

  filter {
    name   = "state"
    values = ["available"]
  }
}

resource "aws_launch_template" "this" {
  for_each = local.groups

  name                   = each.value.name
  description            = "NAT instance of ${each.value.name}"
  image_id               = data.aws_ami.this.id
  instance_type          = local.instance_types[0]
  key_name               = var.key_name
  update_default_version = true
  user_data              = base64gzip(local.user_data_text[each.key])

  block_device_mappings {
    device_name = data.aws_ami.this.root_device_name

    ebs {
      volume_size           = coalesce(var.root_volume_size, local.ami_root_volume_size, 8)
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = var.root_volume_kms_key_id
      delete_on_termination = true
    }
  }

  iam_instance_profile {
    arn = aws_iam_instance_profile.this[each.key].arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  monitoring {
    enabled = var.detailed_monitoring
  }

  network_interfaces {
    #checkov:skip=CKV_AWS_88: A NAT instance needs a public address to reach the internet gateway.
    device_index                = 0
    associate_public_ip_address = true
    delete_on_termination       = true
    security_groups             = concat([aws_security_group.this.id], var.additional_security_group_ids)
  }

  dynamic "credit_specification" {
    for_each = var.credit_specification == null ? [] : [var.credit_specification]

    content {
      cpu_credits = credit_specification.value
    }
  }

  dynamic "tag_specifications" {
    for_each = toset(["instance", "network-interface", "volume"])

    content {
      resource_type = tag_specifications.key
      tags = merge(var.tags, {
        Name                  = each.value.name
        (local.group_tag_key) = each.value.name
      })
    }
  }

  tags = merge(var.tags, { Name = each.value.name })

  lifecycle {
    precondition {
      condition     = var.root_volume_size == null || local.ami_root_volume_size == null ? true : var.root_volume_size >= local.ami_root_volume_size
      error_message = "root_volume_size (${coalesce(var.root_volume_size, 0)} GiB) must be at least the size of the AMI's root snapshot (${coalesce(local.ami_root_volume_size, 0)} GiB)."
    }

    precondition {
      # 21848 characters of base64 are EC2's 16384 bytes of user data.
      condition     = length(base64gzip(local.user_data_text[each.key])) <= 21848
      error_message = "The user data of ${each.key} is ${floor(length(base64gzip(local.user_data_text[each.key])) * 3 / 4)} bytes compressed, over EC2's limit of 16384: fewer route tables per zone or fewer zones."
    }

    precondition {
      condition     = var.credit_specification == null || data.aws_ec2_instance_type.this.burstable_performance_supported
      error_message = "credit_specification applies to burstable instance types only (t2, t3, t3a, t4g); instance_type ${local.instance_types[0]} is not one: set credit_specification = null."
    }

    precondition {
      condition     = length(distinct(values(local.type_architectures))) == 1
      error_message = "instance_types must all run one architecture (one AMI serves them): ${join(", ", [for type, arch in local.type_architectures : "${type} runs ${arch}"])}."
    }

    precondition {
      condition     = contains(data.aws_ec2_instance_type.this.supported_architectures, data.aws_ami.this.architecture)
      error_message = "ami_id ${data.aws_ami.this.id} is built for ${data.aws_ami.this.architecture}, but instance_type ${local.instance_types[0]} runs ${join(" or ", data.aws_ec2_instance_type.this.supported_architectures)}."
    }
  }
}

################################################################################
# Auto Scaling
################################################################################

locals {
  # The launch hook already holds an instance out of service until its boot
  # script reports, so no grace period is needed on top of it (ASG user
  # guide, health check grace period).
  health_check_grace_period = coalesce(var.health_check_grace_period, var.launch_lifecycle_hook ? 0 : null)
}

resource "aws_autoscaling_group" "this" {
  for_each = local.groups

  name                      = each.value.name
  min_size                  = 1
  max_size                  = 1
  desired_capacity          = 1
  vpc_zone_identifier       = [var.zones[each.value.zone].public_subnet_id]
  health_check_type         = "EC2"
  health_check_grace_period = local.health_check_grace_period
  force_delete_warm_pool    = true

  # Spot: a mixed instances policy instead (README, "Spot instances").
  dynamic "launch_template" {
    for_each = var.purchase_option == "on-demand" ? [aws_launch_template.this[each.key]] : []

    content {
      id      = launch_template.value.id
      version = launch_template.value.latest_version
    }
  }

  # All Spot, from whichever allowed type has capacity at the best price; capacity rebalancing
  # launches a replacement when EC2 says an instance is at elevated risk, before the notice.
  capacity_rebalance = var.purchase_option == "spot"

  dynamic "mixed_instances_policy" {
    for_each = var.purchase_option == "spot" ? [aws_launch_template.this[each.key]] : []

    content {
      instances_distribution {
        on_demand_base_capacity                  = 0
        on_demand_percentage_above_base_capacity = 0
        spot_allocation_strategy                 = "price-capacity-optimized"
      }

      launch_template {
        launch_template_specification {
          launch_template_id = mixed_instances_policy.value.id
          version            = mixed_instances_policy.value.latest_version
        }

        dynamic "override" {
          for_each = local.instance_types

          content {
            instance_type = override.value
          }
        }
      }
    }
  }

  dynamic "initial_lifecycle_hook" {
    for_each = var.launch_lifecycle_hook ? [local.lifecycle_hook_name] : []

    content {
      name                 = initial_lifecycle_hook.value
      lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"
      default_result       = "ABANDON"
      heartbeat_timeout    = var.lifecycle_hook_heartbeat_timeout
    }
  }

  # Prepared instances wait stopped; a replacement starts one instead of a
  # cold launch (README, "Warm pool"). On destroy its instances go with it.
  dynamic "warm_pool" {
    for_each = var.warm_pool == null || each.value.role == "standby" ? [] : [var.warm_pool]

    content {
      pool_state = warm_pool.value.pool_state
      min_size   = warm_pool.value.min_size

      instance_reuse_policy {
        reuse_on_scale_in = warm_pool.value.reuse_on_scale_in
      }
    }
  }

  # A health replacement launches the new instance before terminating the
  # unhealthy one (the default terminates first: a whole boot without NAT
  # when the old one was impaired but still forwarding some traffic).
  instance_maintenance_policy {
    min_healthy_percentage = 100
    max_healthy_percentage = 200
  }

  # A new launch template version (new AMI, user data, instance type) rolls
  # the instance. With one instance per group, the default "terminate, then
  # launch" would leave the zone without a NAT for a whole boot. Keeping
  # 100 % healthy and allowing 200 % makes the group launch the replacement
  # first; its boot script takes over the routes, then the old instance goes.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = 100
      max_healthy_percentage = 200
    }
  }

  dynamic "tag" {
    for_each = merge(var.tags, { Name = each.value.name })

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  # A new instance re-points its routes and associates its Elastic IP as soon
  # as it boots: both, and its permissions, must exist first, or Terraform
  # would overwrite what the instance just set. On destroy the order
  # reverses: instances go before the routes they serve.
  depends_on = [
    aws_route.private_default,
    aws_iam_role_policy.this,
    aws_iam_role_policy_attachment.ssm,
  ]
}

resource "aws_autoscaling_notification" "this" {
  count = var.notification_topic_arn == null ? 0 : 1

  group_names = [for zone in sort(keys(aws_autoscaling_group.this)) : aws_autoscaling_group.this[zone].name]
  topic_arn   = var.notification_topic_arn
  notifications = [
    "autoscaling:EC2_INSTANCE_LAUNCH",
    "autoscaling:EC2_INSTANCE_LAUNCH_ERROR",
    "autoscaling:EC2_INSTANCE_TERMINATE",
    "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
  ]
}

################################################################################
# Alarms
################################################################################

# The alarm watches the group, not an instance: EC2 publishes the status
# check metrics per Auto Scaling group too, so no instance ever has to re-point
# it, and the instance role needs no CloudWatch permission at all. It only
# notifies: the group's own EC2 health check replaces an impaired instance,
# and an alarm that could terminate instances would hand whoever may edit it
# a way to terminate any instance of the account (README, security model).
resource "aws_cloudwatch_metric_alarm" "status_check" {
  for_each = local.alarm_names

  alarm_name          = each.value
  alarm_description   = "The NAT instance of ${local.asg_names[each.key]} has failed its EC2 status checks for 2 consecutive minutes. The Auto Scaling group replaces an impaired instance by itself within minutes; this alarm tells you it happened."
  namespace           = "AWS/EC2"
  metric_name         = "StatusCheckFailed"
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "missing"
  alarm_actions       = var.notification_topic_arn == null ? [] : [var.notification_topic_arn]
  ok_actions          = var.notification_topic_arn == null ? [] : [var.notification_topic_arn]

  dimensions = {
    AutoScalingGroupName = local.asg_names[each.key]
  }

  tags = merge(var.tags, { Name = each.value })
}

# One row per zone: traffic, connection tracking against its limit, drops and
# the zones covered, with each route move marked.
resource "aws_cloudwatch_dashboard" "this" {
  count = var.metrics_dashboard ? 1 : 0

  dashboard_name = "${var.name}-nat"
  dashboard_body = jsonencode({
    widgets = flatten([
      for index, zone in keys(var.zones) : [
        for column, graph in [
          { title = "forwarded bytes", metrics = ["ForwardedBytes"], stat = "Sum" },
          { title = "connection tracking", metrics = ["ConntrackEntries", "ConntrackMax"], stat = "Maximum" },
          { title = "drops, covered zones, route moves", metrics = ["DroppedPackets", "CoveringZones", "RoutesMoved"], stat = "Sum" },
          ] : {
          type   = "metric"
          x      = column * 8
          y      = index * 6
          width  = 8
          height = 6
          properties = {
            title   = "${zone}: ${graph.title}"
            region  = local.region
            stat    = graph.stat
            period  = 60
            metrics = [for name in graph.metrics : [var.metrics_namespace, name, "AutoScalingGroupName", local.asg_names[zone]]]
          }
        }
      ]
    ])
  })
}

################################################################################
# Routes
################################################################################

locals {
  # Keyed "<zone>/<route table key>": both parts are chosen by the user and
  # known at plan time, even when the route tables are created in the same
  # apply, and adding or removing one table leaves the others' keys alone.
  private_routes = merge([
    for zone, config in var.zones : {
      for key, rtb in config.private_route_tables : "${zone}/${key}" => {
        zone           = zone
        route_table_id = rtb
      }
    }
  ]...)
}

# A route must name a target when it is created, before any NAT instance
# exists. Each zone's routes start at this interface, which is never
# attached (the route is a blackhole until the first instance boots); every
# instance then replaces the target with its own primary interface.
resource "aws_network_interface" "route_placeholder" {
  for_each = var.zones

  subnet_id       = each.value.public_subnet_id
  description     = "Initial route target for ${local.asg_names[each.key]}; never attached"
  security_groups = [aws_security_group.this.id]

  tags = merge(var.tags, { Name = "${local.asg_names[each.key]}-route-placeholder" })
}

resource "aws_route" "private_default" {
  for_each = local.private_routes

  route_table_id         = each.value.route_table_id
  destination_cidr_block = var.route_destination_cidr
  network_interface_id   = aws_network_interface.route_placeholder[each.value.zone].id

  lifecycle {
    # The NAT instance owns the target; Terraform owns the route's existence.
    ignore_changes = [network_interface_id]
  }
}
