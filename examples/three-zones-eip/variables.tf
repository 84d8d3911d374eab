variable "region" {
  description = "AWS region to deploy the example in; it must have at least three availability zones."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Prefix for the names of the example's resources."
  type        = string
  default     = "nat-3az"
}

variable "notification_topic_arn" {
  description = "ARN of an existing SNS topic for alarms and launch/terminate notifications; null sends none."
  type        = string
  default     = null
}
