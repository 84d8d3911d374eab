#!/bin/bash
# The seed: user data of "AWS - autoscaling and self healing NAT instance" (a blog post of
# 2015-02-09, kept as /work/shared/seeds/000_fb2434259af9d322.txt), step by step as the post gives
# it, unchanged but for what the post tells its readers to fill in and two values the copy lost:
#   @REGION@          the region ("be sure to modify this to your region"; the post's describe line
#                     still holds the CloudFormation fragment `", {"Ref": "AWS::Region"}, "` there,
#                     its other lines say us-east-1);
#   @ROUTE_TABLE_ID@  the route table ("modify this to match your Route Table ID", rtb-xxxxxxxx in
#                     the post). natlab.module.seed_userdata repeats this one replace-route line once
#                     per route table, run one after another, as the author's script would grow;
#   the IMDS URL      stripped from the copy after `curl -s`: the instance-id URL the post names,
#                     http://169.254.169.254/latest/meta-data/instance-id (IMDSv1, no token);
#   0.0.0.0/0         the value of --destination-cidr-block, stripped from the copy too: the post
#                     replaces the default route.
# These comment lines are the only addition. The post's full user data listing is not in the copy;
# its commands are the ones the walk-through gives, in its order.
echo 1 > /proc/sys/net/ipv4/ip_forward
my_instance_id=$(curl -s http://169.254.169.254/latest/meta-data/instance-id)
my_eni_id=$(aws ec2 describe-network-interfaces --region @REGION@ --filters Name=attachment.instance-id,Values=${my_instance_id} Name=attachment.device-index,Values=0 --output text | grep NETWORKINTERFACES | cut -f5)
aws ec2 replace-route --route-table-id @ROUTE_TABLE_ID@ --destination-cidr-block 0.0.0.0/0 --network-interface-id ${my_eni_id} --region @REGION@
aws ec2 modify-network-interface-attribute --network-interface-id ${my_eni_id} --no-source-dest-check --region @REGION@
