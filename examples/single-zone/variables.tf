variable "region" {
  description = "AWS region to deploy the example in."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Prefix for the names of the example's resources."
  type        = string
  default     = "nat-single"
}

variable "standby" {
  description = "Add a standby instance that takes the zone over within seconds when the NAT fails (the module's takeover = \"standby\"); a second t4g.nano."
  type        = bool
  default     = false
}
