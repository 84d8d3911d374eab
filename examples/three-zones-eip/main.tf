provider "aws" {
  region = var.region
}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394: The example deliberately takes the first zones of whichever region it runs in.
  state = "available"
}

locals {
  # Zone name => index, used to carve one public and one private /24 per zone.
  zones = { for index, zone in slice(sort(data.aws_availability_zones.available.names), 0, 3) : zone => index }
  tags  = { Example = "three-zones-eip" }
}

################################################################################
# Network: a public and a private subnet in each of three zones
################################################################################

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11: Flow logs are out of scope for a throwaway example VPC; enable them in real VPCs.
  cidr_block           = "10.20.0.0/16"
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

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  tags = merge(local.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_subnet" "public" {
  for_each = local.zones

  vpc_id            = aws_vpc.this.id
  availability_zone = each.key
  cidr_block        = cidrsubnet(aws_vpc.this.cidr_block, 8, each.value)

  tags = merge(local.tags, { Name = "${var.name}-public-${each.key}" })
}

resource "aws_route_table_association" "public" {
  for_each = local.zones

  subnet_id      = aws_subnet.public[each.key].id
  route_table_id = aws_route_table.public.id
}

resource "aws_subnet" "private" {
  for_each = local.zones

  vpc_id            = aws_vpc.this.id
  availability_zone = each.key
  cidr_block        = cidrsubnet(aws_vpc.this.cidr_block, 8, 100 + each.value)

  tags = merge(local.tags, { Name = "${var.name}-private-${each.key}" })
}

# One private route table per zone, so each zone egresses through its own NAT.
resource "aws_route_table" "private" {
  for_each = local.zones

  vpc_id = aws_vpc.this.id

  tags = merge(local.tags, { Name = "${var.name}-private-${each.key}" })
}

resource "aws_route_table_association" "private" {
  for_each = local.zones

  subnet_id      = aws_subnet.private[each.key].id
  route_table_id = aws_route_table.private[each.key].id
}

################################################################################
# NAT instances, one per zone, each with an Elastic IP of its own
################################################################################

module "nat" {
  source = "../../"

  name       = var.name
  vpc_id     = aws_vpc.this.id
  elastic_ip = "create"
  # The NATs watch each other: a zone whose NAT dies egresses through another zone's within
  # seconds, until its replacement has booted (the default, stated here because it is the point).
  takeover = "peers"

  # Route table IDs are unknown until apply; the keys ("private") are not.
  zones = {
    for zone in keys(local.zones) : zone => {
      public_subnet_id     = aws_subnet.public[zone].id
      private_route_tables = { private = aws_route_table.private[zone].id }
    }
  }

  notification_topic_arn = var.notification_topic_arn
  ssm_access             = true
  tags                   = local.tags

  depends_on = [aws_route.public_internet, aws_route_table_association.public]
}
