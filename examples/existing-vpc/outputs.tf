output "autoscaling_group_names" {
  description = "Name of each zone's Auto Scaling group, keyed by availability zone."
  value       = module.nat.autoscaling_group_names
}

output "security_group_id" {
  description = "ID of the NAT instances' security group."
  value       = module.nat.security_group_id
}

output "elastic_ip_public_ips" {
  description = "Egress address of each zone when Elastic IPs are used, keyed by availability zone."
  value       = module.nat.elastic_ip_public_ips
}

output "route_placeholder_network_interface_ids" {
  description = "Placeholder route target of each zone until its first NAT instance boots."
  value       = module.nat.route_placeholder_network_interface_ids
}
