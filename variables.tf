################################################################################
# Required
################################################################################

variable "name" {
  description = "Prefix for the names of everything the module creates: Auto Scaling groups are named `<name>-<zone>`, alarms `<name>-<zone>-status-check`, the launch lifecycle hook `<name>-launch`."
  type        = string

  validation {
    condition     = length(var.name) >= 1 && length(var.name) <= 32
    error_message = "name must be 1 to 32 characters long."
  }

  validation {
    condition     = can(regex("^[a-zA-Z0-9-]*$", var.name))
    error_message = "name may contain only letters, digits and hyphens (a-z, A-Z, 0-9, -)."
  }
}

variable "vpc_id" {
  description = "ID of the VPC the NAT instances serve (for example `vpc-0123456789abcdef0`)."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]{8,17}$", var.vpc_id))
    error_message = "vpc_id must be a VPC ID such as vpc-0123456789abcdef0."
  }
}

variable "zones" {
  description = "One entry per availability zone, keyed by the zone name (for example `eu-west-1a`). Each zone gets its own Auto Scaling group of exactly one NAT instance, launched in `public_subnet_id`, which becomes the IPv4 default route of every table in `private_route_tables`: a map from a key you choose (for example `app`, `db`; lower-case letters, digits, `_` and `-`) to the route table ID. The keys must be known at plan time, the IDs need not be, so the route tables can be created in the same apply. Set `eip_allocation_id` only when `elastic_ip` is `existing`."
  type = map(object({
    public_subnet_id     = string
    private_route_tables = map(string)
    eip_allocation_id    = optional(string)
  }))
  nullable = false

  validation {
    condition     = length(var.zones) > 0
    error_message = "zones must contain at least one availability zone."
  }

  validation {
    condition     = alltrue([for zone in keys(var.zones) : can(regex("^[a-z]{2}(-[a-z0-9]+)+[a-z]$", zone))])
    error_message = "zones must be keyed by availability zone name, such as eu-west-1a or us-gov-west-1b."
  }

  validation {
    condition     = alltrue([for zone in values(var.zones) : can(regex("^subnet-[0-9a-f]{8,17}$", zone.public_subnet_id))])
    error_message = "zones[*].public_subnet_id must be a subnet ID such as subnet-0123456789abcdef0."
  }

  validation {
    condition     = alltrue([for zone in values(var.zones) : length(zone.private_route_tables) > 0])
    error_message = "zones[*].private_route_tables must map at least one key to a route table per zone."
  }

  validation {
    condition = alltrue(flatten([
      for zone in values(var.zones) : [for key in keys(zone.private_route_tables) : can(regex("^[a-z0-9_-]+$", key))]
    ]))
    error_message = "zones[*].private_route_tables must be keyed by lower-case letters, digits, underscores and hyphens (a-z, 0-9, _, -), such as app or db-1."
  }

  validation {
    condition = alltrue(flatten([
      for zone in values(var.zones) : [for rtb in values(zone.private_route_tables) : can(regex("^rtb-[0-9a-f]{8,17}$", rtb))]
    ]))
    error_message = "zones[*].private_route_tables must map to route table IDs such as rtb-0123456789abcdef0."
  }

  validation {
    condition = length(flatten([for zone in values(var.zones) : values(zone.private_route_tables)])) == length(distinct(flatten([
      for zone in values(var.zones) : values(zone.private_route_tables)
    ])))
    error_message = "zones[*].private_route_tables must not repeat a route table ID, under two keys or in two zones: a table can have only one default route."
  }

  validation {
    condition = alltrue([
      for zone in values(var.zones) : zone.eip_allocation_id == null || can(regex("^eipalloc-[0-9a-f]{8,17}$", zone.eip_allocation_id))
    ])
    error_message = "zones[*].eip_allocation_id must be an Elastic IP allocation ID such as eipalloc-0123456789abcdef0."
  }

  validation {
    condition = length(compact([for zone in values(var.zones) : zone.eip_allocation_id])) == length(distinct(compact([
      for zone in values(var.zones) : zone.eip_allocation_id
    ])))
    error_message = "zones[*].eip_allocation_id must differ between zones: an Elastic IP can be associated with one NAT instance only."
  }
}

################################################################################
# Addressing
################################################################################

variable "elastic_ip" {
  description = "Which public address each NAT instance egresses from: `none` keeps the address AWS assigns at launch (it changes on every replacement), `create` allocates one Elastic IP per zone, `existing` uses `zones[*].eip_allocation_id`. The boot script associates the Elastic IP with each new instance."
  type        = string
  default     = "none"
  nullable    = false

  validation {
    condition     = contains(["none", "create", "existing"], var.elastic_ip)
    error_message = "elastic_ip must be one of \"none\", \"create\" or \"existing\"."
  }

  validation {
    condition     = var.elastic_ip != "existing" || alltrue([for zone in values(var.zones) : zone.eip_allocation_id != null])
    error_message = "elastic_ip = \"existing\" requires zones[*].eip_allocation_id in every zone."
  }

  validation {
    condition     = var.elastic_ip == "existing" || alltrue([for zone in values(var.zones) : zone.eip_allocation_id == null])
    error_message = "zones[*].eip_allocation_id is allowed only with elastic_ip = \"existing\"."
  }
}

variable "takeover" {
  description = "What covers a failed NAT until its replacement serves: `peers` makes every NAT probe the other zones' NATs through themselves about every second and take a dead or hung zone's routes over within seconds, until that zone's replacement takes them back (README, \"Seconds-level failover\"); with one zone it does nothing. `standby` gives every zone a second group of one (`<name>-<zone>-standby`) whose instance boots prepared, serves nothing, and takes its zone's routes and Elastic IP over when the zone's NAT fails (README, \"Standby\"; one more instance per zone). `off`: each zone waits for its own replacement."
  type        = string
  default     = "peers"
  nullable    = false

  validation {
    condition     = contains(["peers", "standby", "off"], var.takeover)
    error_message = "takeover must be one of \"peers\", \"standby\" or \"off\"."
  }
}

variable "takeover_probe_target" {
  description = "The host:port the takeover probes connect to through each peer (a TCP connect, nothing more). Null: the regional EC2 endpoint, ec2.<region>.amazonaws.com:443, which every NAT already reaches."
  type        = string
  default     = null

  validation {
    condition     = var.takeover_probe_target == null || can(regex("^[A-Za-z0-9.-]+:[0-9]{1,5}$", var.takeover_probe_target))
    error_message = "takeover_probe_target must be null or host:port, such as ec2.us-east-1.amazonaws.com:443."
  }
}

variable "route_destination_cidr" {
  description = "IPv4 destination the module routes through each zone's NAT instance in the private route tables."
  type        = string
  default     = "0.0.0.0/0"
  nullable    = false

  validation {
    condition     = can(cidrnetmask(var.route_destination_cidr))
    error_message = "route_destination_cidr must be an IPv4 CIDR block such as 0.0.0.0/0."
  }

  # EC2 would store 10.0.0.1/8 as 10.0.0.0/8, and every plan would then want
  # to replace the route.
  validation {
    condition     = !can(cidrnetmask(var.route_destination_cidr)) || try(cidrsubnet(var.route_destination_cidr, 0, 0) == var.route_destination_cidr, false)
    error_message = "route_destination_cidr ${var.route_destination_cidr} has host bits set: write it as ${try(cidrsubnet(var.route_destination_cidr, 0, 0), "its network address")}."
  }
}

variable "served_cidrs" {
  description = "IPv4 CIDR blocks the NAT instances accept traffic from and masquerade. Empty means every IPv4 CIDR block associated with the VPC, which the module looks up (this works when the VPC is created in the same apply, too)."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for cidr in var.served_cidrs : can(cidrnetmask(cidr))])
    error_message = "served_cidrs must contain IPv4 CIDR blocks such as 10.0.0.0/16."
  }

  validation {
    condition     = alltrue([for cidr in var.served_cidrs : !can(cidrnetmask(cidr)) || try(cidrsubnet(cidr, 0, 0) == cidr, false)])
    error_message = "served_cidrs must be network addresses without host bits: write ${join(", ", [for cidr in var.served_cidrs : "${cidr} as ${try(cidrsubnet(cidr, 0, 0), cidr)}" if can(cidrnetmask(cidr)) && try(cidrsubnet(cidr, 0, 0) != cidr, false)])}."
  }

  validation {
    condition     = !contains(var.served_cidrs, "0.0.0.0/0")
    error_message = "served_cidrs must not contain 0.0.0.0/0: the NAT instances would forward traffic for the whole internet."
  }
}

################################################################################
# Instances
################################################################################

variable "instance_type" {
  description = "EC2 instance type of the NAT instances. Its network bandwidth is the NAT's bandwidth."
  type        = string
  default     = "t4g.nano"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be an EC2 instance type such as t4g.nano or c7gn.medium."
  }
}

variable "instance_types" {
  description = "EC2 instance types the NAT instances may run, all of one architecture (checked at plan), in order of preference. Empty: `instance_type` alone; when set it replaces `instance_type`. More than one needs `purchase_option = \"spot\"`: the group then launches whichever has the Spot capacity at the best price."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for type in var.instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", type))])
    error_message = "instance_types must list EC2 instance types such as t4g.nano or c7gn.medium."
  }

  validation {
    condition     = length(distinct(var.instance_types)) == length(var.instance_types)
    error_message = "instance_types must not list a type twice."
  }

  validation {
    condition     = length(var.instance_types) <= 1 || var.purchase_option == "spot"
    error_message = "instance_types may list more than one type only with purchase_option = \"spot\" (an on-demand group launches one type): list one type or set purchase_option = \"spot\"."
  }
}

variable "purchase_option" {
  description = "How the NAT instances are bought: `on-demand`, or `spot` (up to ~90 % cheaper; EC2 may take an instance back with two minutes' notice). With `spot` each group runs a mixed instances policy over `instance_types` (all Spot, price-capacity-optimized) with capacity rebalancing, and each NAT's watcher hands its zone's routes to a peer on the interruption notice (needs `takeover = \"peers\"` and two zones or more; README, \"Spot instances\")."
  type        = string
  default     = "on-demand"
  nullable    = false

  validation {
    condition     = contains(["on-demand", "spot"], var.purchase_option)
    error_message = "purchase_option must be one of \"on-demand\" or \"spot\"."
  }

  validation {
    condition     = var.purchase_option == "on-demand" || var.warm_pool == null
    error_message = "purchase_option = \"spot\" needs warm_pool = null: Auto Scaling has no warm pool for a group that launches Spot Instances or has a mixed instances policy (PutWarmPool API reference)."
  }
}

variable "ami_id" {
  description = "AMI of the NAT instances. Null selects Amazon Linux 2023 (default kernel) for the architecture of `instance_type`, looked up once and held until `ami_refresh_key` changes. A custom AMI must provide bash, curl, the AWS CLI, iptables/nftables and systemd, and match the instance type's architecture."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must be null or an AMI ID such as ami-0123456789abcdef0."
  }
}

variable "ami_refresh_key" {
  description = "Any string. The default image (latest Amazon Linux 2023, default kernel, for the instance type's architecture) is looked up once and held, so a new release never replaces the NAT instances on its own; change this value (for example to a date) to look it up again and roll the NATs onto the new image. Ignored when `ami_id` is set."
  type        = string
  default     = "initial"
  nullable    = false
}

variable "root_volume_size" {
  description = "Size in GiB of each NAT instance's encrypted gp3 root volume. Null uses the size of the AMI's root snapshot (8 GiB for Amazon Linux 2023)."
  type        = number
  default     = null

  validation {
    condition     = var.root_volume_size == null ? true : var.root_volume_size >= 1 && var.root_volume_size <= 16384
    error_message = "root_volume_size must be null or between 1 and 16384 GiB."
  }
}

variable "key_name" {
  description = "Name of an EC2 key pair to allow SSH to the NAT instances. Null (the default) installs no key; prefer `ssm_access`."
  type        = string
  default     = null

  validation {
    condition     = var.key_name == null ? true : length(var.key_name) > 0
    error_message = "key_name must be null or a non-empty key pair name."
  }
}

variable "ssm_access" {
  description = "Whether to attach the AWS managed policy AmazonSSMManagedInstanceCore to the instance role, so operators can reach the NAT instances through Session Manager."
  type        = bool
  default     = false
  nullable    = false
}

variable "detailed_monitoring" {
  description = "Whether to enable EC2 detailed (one-minute) monitoring of the NAT instances. The status check metric the alarm watches is one-minute either way."
  type        = bool
  default     = false
  nullable    = false
}

variable "additional_security_group_ids" {
  description = "IDs of further security groups for the NAT instances' network interface, besides the module's own (for example one that lets a monitoring host in). At most 4: an interface takes 5 groups by default."
  type        = list(string)
  default     = []
  nullable    = false

  validation {
    condition     = alltrue([for id in var.additional_security_group_ids : can(regex("^sg-[0-9a-f]{8}([0-9a-f]{9})?$", id))])
    error_message = "additional_security_group_ids must hold security group IDs (sg- followed by 8 or 17 hexadecimal digits)."
  }

  validation {
    condition     = length(var.additional_security_group_ids) <= 4 && length(distinct(var.additional_security_group_ids)) == length(var.additional_security_group_ids)
    error_message = "additional_security_group_ids may hold at most 4 distinct IDs: with the module's own group that is the default limit of 5 groups per network interface."
  }
}

variable "credit_specification" {
  description = "CPU credit option of a burstable instance type (t2, t3, t3a, t4g): `standard` or `unlimited`. Null (the default) keeps the type's launch default (unlimited for t3, t3a and t4g). Only for burstable types."
  type        = string
  default     = null

  validation {
    condition     = var.credit_specification == null ? true : contains(["standard", "unlimited"], var.credit_specification)
    error_message = "credit_specification must be null, \"standard\" or \"unlimited\"."
  }
}

variable "root_volume_kms_key_id" {
  description = "ARN of a customer managed KMS key to encrypt the root volume with. Null (the default) uses the account's default EBS key. The key policy must let the Auto Scaling service-linked role use the key (see the README, Security model)."
  type        = string
  default     = null

  validation {
    condition     = var.root_volume_kms_key_id == null ? true : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9a-f-]+$", var.root_volume_kms_key_id))
    error_message = "root_volume_kms_key_id must be null or a KMS key ARN (arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID); an alias cannot be used for an Auto Scaling launch."
  }
}

variable "iam_role_permissions_boundary" {
  description = "ARN of an IAM policy to set as the permissions boundary of the instance role, for accounts that require one. Null sets none."
  type        = string
  default     = null

  validation {
    condition     = var.iam_role_permissions_boundary == null || can(regex("^arn:aws[a-z-]*:iam::(aws|[0-9]{12}):policy/.+$", var.iam_role_permissions_boundary))
    error_message = "iam_role_permissions_boundary must be null or an IAM policy ARN such as arn:aws:iam::123456789012:policy/boundary."
  }
}

################################################################################
# Replacement and alarms
################################################################################

variable "health_check_grace_period" {
  description = "Seconds the Auto Scaling group waits after an instance comes into service before acting on its EC2 health check. Null means 0 with the launch lifecycle hook (which already keeps a booting instance out of service) and is not allowed without it."
  type        = number
  default     = null

  validation {
    condition     = var.health_check_grace_period == null || try(var.health_check_grace_period >= 0 && var.health_check_grace_period <= 7200, false)
    error_message = "health_check_grace_period must be null or between 0 and 7200 seconds."
  }

  validation {
    condition     = var.health_check_grace_period != null || var.launch_lifecycle_hook
    error_message = "health_check_grace_period is required when launch_lifecycle_hook is false: set the seconds a NAT instance needs to boot (for example 120)."
  }
}

variable "launch_lifecycle_hook" {
  description = "Whether each new NAT instance waits in Pending:Wait until its boot script reports success. A failed or timed-out boot abandons the launch, so the group terminates the instance and tries again instead of keeping a NAT that does not forward."
  type        = bool
  default     = true
  nullable    = false
}

variable "lifecycle_hook_heartbeat_timeout" {
  description = "Seconds a new NAT instance may take to boot and report success before the launch lifecycle hook abandons it. Used only when `launch_lifecycle_hook` is true."
  type        = number
  default     = 300
  nullable    = false

  validation {
    condition     = var.lifecycle_hook_heartbeat_timeout >= 30 && var.lifecycle_hook_heartbeat_timeout <= 7200
    error_message = "lifecycle_hook_heartbeat_timeout must be between 30 and 7200 seconds."
  }
}

variable "warm_pool" {
  description = "A warm pool per zone: instances launched ahead, prepared by their first boot (nftables installed, configuration written), then stopped, so a replacement only starts one and takes over. `pool_state` is `Stopped` (a stopped instance costs its EBS volume only); `min_size` is how many wait per zone; `reuse_on_scale_in` returns an instance to the pool instead of terminating it on scale-in. Null turns the warm pool off (every replacement is a cold launch). Needs `launch_lifecycle_hook`: the hook holds an instance until its preparation is done."
  type = object({
    pool_state        = optional(string, "Stopped")
    min_size          = optional(number, 1)
    reuse_on_scale_in = optional(bool, false)
  })
  default = {}

  validation {
    condition     = var.warm_pool == null || try(var.warm_pool.pool_state == "Stopped", false)
    error_message = "warm_pool.pool_state must be \"Stopped\". \"Running\" is not offered: the boot script acts when the instance starts, and a running warm instance is not started again when it leaves the pool. \"Hibernated\" needs a hibernation-capable launch template (encrypted root volume sized for RAM, hibernation_options) that the module does not make."
  }

  validation {
    condition     = var.warm_pool == null || try(var.warm_pool.min_size >= 1 && var.warm_pool.min_size <= 10 && floor(var.warm_pool.min_size) == var.warm_pool.min_size, false)
    error_message = "warm_pool.min_size must be a whole number from 1 to 10 (instances waiting per zone); set warm_pool = null for no warm pool."
  }

  validation {
    condition     = var.warm_pool == null || var.launch_lifecycle_hook
    error_message = "warm_pool needs launch_lifecycle_hook = true: without the hook Auto Scaling stops a warm instance before its boot script has prepared it. Set warm_pool = null or keep the hook."
  }
}

variable "status_check_alarm" {
  description = "Whether to create, per zone, a CloudWatch alarm on the EC2 status checks of the zone's Auto Scaling group (two consecutive failed minutes). It notifies `notification_topic_arn` and takes no other action: the group's own health check replaces an impaired instance."
  type        = bool
  default     = true
  nullable    = false
}

variable "notification_topic_arn" {
  description = "ARN of an SNS topic that receives the status check alarms and the Auto Scaling launch and terminate notifications. Null sends none. The ARN must be known at plan time."
  type        = string
  default     = null

  validation {
    condition     = var.notification_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+(\\.fifo)?$", var.notification_topic_arn))
    error_message = "notification_topic_arn must be null or an SNS topic ARN such as arn:aws:sns:eu-west-1:123456789012:nat-events."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace each NAT publishes its metrics to once a minute (ForwardedBytes, ForwardedPackets, ConntrackEntries, ConntrackMax, DroppedPackets, CoveringZones; RoutesMoved each time routes move to it), by AutoScalingGroupName. Null (the default) publishes none: custom metrics are billed per metric (README, Metrics)."
  type        = string
  default     = null

  validation {
    condition     = var.metrics_namespace == null ? true : can(regex("^[0-9A-Za-z._/#:-]{1,255}$", var.metrics_namespace)) && !startswith(coalesce(var.metrics_namespace, "-"), "AWS/")
    error_message = "metrics_namespace must be null or a CloudWatch namespace: 1 to 255 of A-Z a-z 0-9 . - _ / # :, not starting with \"AWS/\" (reserved for AWS services)."
  }
}

variable "metrics_dashboard" {
  description = "Whether to create a CloudWatch dashboard of the NATs' metrics (one row of graphs per zone). Needs `metrics_namespace`."
  type        = bool
  default     = false
  nullable    = false

  validation {
    condition     = !var.metrics_dashboard || var.metrics_namespace != null
    error_message = "metrics_dashboard needs metrics_namespace: without it the NATs publish nothing to show."
  }
}

################################################################################
# Tags
################################################################################

variable "tags" {
  description = "Tags added to every resource the module creates, and propagated to the NAT instances, their network interfaces and volumes."
  type        = map(string)
  default     = {}
  nullable    = false
}
