output "vpc_id" {
  description = "ID of the example VPC."
  value       = aws_vpc.this.id
}

output "private_subnet_id" {
  description = "ID of the private subnet whose traffic leaves through the NAT instance."
  value       = aws_subnet.private.id
}

output "autoscaling_group_names" {
  description = "Name of the NAT instance's Auto Scaling group, keyed by availability zone."
  value       = module.nat.autoscaling_group_names
}

output "status_check_alarm_names" {
  description = "Name of the status check alarm, keyed by availability zone."
  value       = module.nat.status_check_alarm_names
}

output "standby_autoscaling_group_names" {
  description = "Name of the standby's Auto Scaling group, keyed by availability zone (empty without standby)."
  value       = module.nat.standby_autoscaling_group_names
}
