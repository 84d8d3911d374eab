provider "aws" {
  region = var.region
}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394: The example deliberately takes the first zones of whichever region it runs in.
  state = "available"
}

locals {
  zone = data.aws_availability_zones.available.names[0]
  tags = { Example = "single-zone" }
}

################################################################################
# Network: one public and one private subnet
################################################################################

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11: Flow logs are out of scope for a throwaway example VPC; enable them in real VPCs.
  cidr_block           = "10.0.0.0/16"
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = merge(local.tags, { Name = var.name })
}

# Nothing uses the default security group; make it deny everything.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id

  tags = merge(local.tags, { Name = "${var.name}-default-deny" })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = merge(local.tags, { Name = var.name })
}

resource "aws_subnet" "public" {
  vpc_id            = aws_vpc.this.id
  availability_zone = local.zone
  cidr_block        = "10.0.0.0/24"

  tags = merge(local.tags, { Name = "${var.name}-public" })
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  tags = merge(local.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  subnet_id      = aws_subnet.public.id
  route_table_id = aws_route_table.public.id
}

resource "aws_subnet" "private" {
  vpc_id            = aws_vpc.this.id
  availability_zone = local.zone
  cidr_block        = "10.0.1.0/24"

  tags = merge(local.tags, { Name = "${var.name}-private" })
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id

  tags = merge(local.tags, { Name = "${var.name}-private" })
}

resource "aws_route_table_association" "private" {
  subnet_id      = aws_subnet.private.id
  route_table_id = aws_route_table.private.id
}

################################################################################
# NAT instance
################################################################################

module "nat" {
  source = "../../"

  name   = var.name
  vpc_id = aws_vpc.this.id

  # The VPC, subnet and route table are created in the same apply: the route
  # table is keyed by a name chosen here ("private"), known at plan time, and
  # the module looks the VPC's CIDR blocks up once the VPC exists.
  zones = {
    (local.zone) = {
      public_subnet_id     = aws_subnet.public.id
      private_route_tables = { private = aws_route_table.private.id }
    }
  }

  # One zone has no peer to take over for it: a standby can (README, "Standby").
  takeover = var.standby ? "standby" : "peers"

  tags = local.tags

  # The instance needs its internet route to call AWS APIs at boot.
  depends_on = [aws_route.public_internet, aws_route_table_association.public]
}
