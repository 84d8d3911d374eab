variable "region" {
  description = "AWS region of the existing VPC."
  type        = string
}

variable "name" {
  description = "Prefix for the names of the NAT resources."
  type        = string
  default     = "egress"
}

variable "vpc_id" {
  description = "ID of the existing VPC."
  type        = string
}

variable "zones" {
  description = "Existing public subnet and private route tables of each availability zone, keyed by zone name; private_route_tables maps a name of your choice (such as app or db) to a route table ID; eip_allocation_id only with elastic_ip = \"existing\"."
  type = map(object({
    public_subnet_id     = string
    private_route_tables = map(string)
    eip_allocation_id    = optional(string)
  }))
}

variable "elastic_ip" {
  description = "Public addressing of the NAT instances: \"none\", \"create\" or \"existing\"."
  type        = string
  default     = "none"
}

variable "instance_type" {
  description = "EC2 instance type of the NAT instances."
  type        = string
  default     = "t4g.nano"
}

variable "tags" {
  description = "Tags for every NAT resource."
  type        = map(string)
  default     = {}
}
