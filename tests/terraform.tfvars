# Inputs every tests/*.tftest.hcl starts from (terraform test reads this file
# from the test directory): two zones, one private route table each. A file's
# own `variables` block, then a run's, take precedence over these values.

name   = "egress"
vpc_id = "vpc-0a000001"
zones = {
  "eu-west-1a" = { public_subnet_id = "subnet-0a000001", private_route_tables = { main = "rtb-0a000001" } }
  "eu-west-1b" = { public_subnet_id = "subnet-0b000001", private_route_tables = { main = "rtb-0b000001" } }
}
