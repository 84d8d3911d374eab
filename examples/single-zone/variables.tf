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
