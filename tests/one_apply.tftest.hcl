# One apply from nothing: a configuration that creates the VPC and its route
# tables together with the module must plan (no "Invalid for_each argument"),
# although the route table IDs and the VPC's CIDR blocks are unknown until
# apply. The mock provider leaves every computed attribute unknown at plan.

mock_provider "aws" {
  source = "./tests/mocks"
}

run "plans_with_network_created_in_the_same_apply" {
  command = plan

  module {
    source = "./tests/fixtures/new_network"
  }

  assert {
    condition     = output.autoscaling_group_names == tomap({ "eu-west-1a" = "egress-eu-west-1a" })
    error_message = "The module must plan one group per zone when the network is created in the same apply."
  }
}
