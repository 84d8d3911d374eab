output "autoscaling_group_names" {
  description = "Name of each zone's Auto Scaling group, keyed by availability zone."
  value       = tomap({ for zone in keys(var.zones) : zone => aws_autoscaling_group.this[zone].name })
}

output "standby_autoscaling_group_names" {
  description = "Name of each zone's standby Auto Scaling group, keyed by availability zone; empty unless `takeover` is `standby`."
  value       = tomap({ for zone, name in local.standby_asg_names : zone => aws_autoscaling_group.this["${zone}-standby"].name })
}

output "launch_template_ids" {
  description = "ID of each zone's launch template, keyed by availability zone (a standby's by `<zone>-standby`)."
  value       = tomap({ for zone, template in aws_launch_template.this : zone => template.id })
}

output "security_group_id" {
  description = "ID of the security group of the NAT instances."
  value       = aws_security_group.this.id
}

output "iam_role_arns" {
  description = "ARN of each zone's IAM role (the NAT instances of a zone run as their own role), keyed by availability zone (a standby's by `<zone>-standby`)."
  value       = tomap({ for zone, role in aws_iam_role.this : zone => role.arn })
}

output "iam_role_names" {
  description = "Name of each zone's IAM role, keyed by availability zone (a standby's by `<zone>-standby`), to attach further policies."
  value       = tomap({ for zone, role in aws_iam_role.this : zone => role.name })
}

output "instance_profile_arns" {
  description = "ARN of each zone's instance profile, keyed by availability zone (a standby's by `<zone>-standby`)."
  value       = tomap({ for zone, profile in aws_iam_instance_profile.this : zone => profile.arn })
}

output "status_check_alarm_names" {
  description = "Name of each zone's status check alarm, keyed by availability zone; empty when `status_check_alarm` is false."
  value       = tomap({ for zone, alarm in aws_cloudwatch_metric_alarm.status_check : zone => alarm.alarm_name })
}

output "elastic_ip_public_ips" {
  description = "Public IPv4 address each zone's NAT instance egresses from, keyed by availability zone; empty when `elastic_ip` is none."
  value = tomap(merge(
    { for zone, eip in aws_eip.this : zone => eip.public_ip },
    { for zone, eip in data.aws_eip.existing : zone => eip.public_ip },
  ))
}

output "elastic_ip_allocation_ids" {
  description = "Allocation ID of each zone's Elastic IP, keyed by availability zone; empty when `elastic_ip` is none."
  value       = tomap(local.eip_allocation_ids)
}

output "route_placeholder_network_interface_ids" {
  description = "ID of each zone's placeholder network interface, the route target until the zone's first NAT instance boots, keyed by availability zone."
  value       = tomap({ for zone, eni in aws_network_interface.route_placeholder : zone => eni.id })
}

output "metrics_dashboard_name" {
  description = "Name of the CloudWatch dashboard of the NATs' metrics; null when `metrics_dashboard` is false."
  value       = one(aws_cloudwatch_dashboard.this[*].dashboard_name)
}

output "rendered_user_data" {
  description = "The user data each zone's NAT instances boot, as text (the launch template holds it gzip-compressed), keyed by availability zone (a standby's by `<zone>-standby`): what to read when reviewing a change. Sensitive only to keep it out of the apply log."
  value       = local.user_data_text
  sensitive   = true
}

output "lifecycle_hook_name" {
  description = "Name of the launch lifecycle hook the boot script completes; null when `launch_lifecycle_hook` is false."
  value       = local.lifecycle_hook_name
}
