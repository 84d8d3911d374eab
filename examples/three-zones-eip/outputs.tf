output "vpc_id" {
  description = "ID of the example VPC."
  value       = aws_vpc.this.id
}

output "elastic_ip_public_ips" {
  description = "Egress address of each zone, stable across NAT replacements, keyed by availability zone."
  value       = module.nat.elastic_ip_public_ips
}

output "autoscaling_group_names" {
  description = "Name of each zone's Auto Scaling group, keyed by availability zone."
  value       = module.nat.autoscaling_group_names
}

output "iam_role_names" {
  description = "Name of each zone's NAT instance IAM role, keyed by availability zone."
  value       = module.nat.iam_role_names
}
