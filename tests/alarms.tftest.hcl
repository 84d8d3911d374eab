# Status check alarms, launch lifecycle hook and notifications.

# Shared fakes and inputs: tests/mocks/aws.tfmock.hcl, tests/terraform.tfvars.
mock_provider "aws" {
  source = "./tests/mocks"
}

run "each_zone_has_a_status_check_alarm_that_only_notifies_and_watches_its_group" {
  command = plan

  assert {
    condition     = sort([for alarm in aws_cloudwatch_metric_alarm.status_check : alarm.alarm_name]) == tolist(["egress-eu-west-1a-status-check", "egress-eu-west-1b-status-check"])
    error_message = "Each zone must have an alarm named <name>-<zone>-status-check."
  }

  assert {
    condition = alltrue([
      for alarm in aws_cloudwatch_metric_alarm.status_check :
      alarm.namespace == "AWS/EC2" && alarm.metric_name == "StatusCheckFailed" && alarm.statistic == "Maximum"
    ])
    error_message = "Alarms must watch the maximum of AWS/EC2 StatusCheckFailed."
  }

  assert {
    condition = alltrue([
      for alarm in aws_cloudwatch_metric_alarm.status_check :
      alarm.period == 60 && alarm.evaluation_periods == 2 && alarm.datapoints_to_alarm == 2 && alarm.threshold == 1
    ])
    error_message = "Alarms must fire after two failed one-minute periods."
  }

  assert {
    condition = alltrue([
      for zone, alarm in aws_cloudwatch_metric_alarm.status_check :
      alarm.dimensions == tomap({ AutoScalingGroupName = "egress-${zone}" })
    ])
    error_message = "Each zone's alarm must watch its own Auto Scaling group (dimension AutoScalingGroupName = <name>-<zone>) and nothing else: no instance ID to re-point."
  }

  assert {
    condition = alltrue([
      for alarm in aws_cloudwatch_metric_alarm.status_check :
      length(alarm.alarm_actions) == 0 && length(alarm.ok_actions) == 0 && try(length(alarm.insufficient_data_actions), 0) == 0
    ])
    error_message = "Without a topic, alarms must have no action at all (in particular no EC2 terminate action)."
  }

  assert {
    condition     = !strcontains(output.rendered_user_data["eu-west-1b"], "status-check") && !strcontains(output.rendered_user_data["eu-west-1b"], "NAT_ALARM_NAME")
    error_message = "The boot script must not be told any alarm: nothing on the instance touches the alarm."
  }

  assert {
    condition     = strcontains(output.rendered_user_data["eu-west-1b"], "NAT_NOTIFICATION_TOPIC_ARN=''")
    error_message = "Without a topic, the boot script must be told there is none (empty string)."
  }
}

run "each_group_waits_for_its_boot_script" {
  command = plan

  assert {
    condition = alltrue([
      for asg in aws_autoscaling_group.this :
      length(asg.initial_lifecycle_hook) == 1 && alltrue([
        for hook in asg.initial_lifecycle_hook :
        hook.name == "egress-launch" && hook.lifecycle_transition == "autoscaling:EC2_INSTANCE_LAUNCHING" && hook.default_result == "ABANDON" && hook.heartbeat_timeout == 300
      ])
    ])
    error_message = "Each group must hold new instances in a launch hook named <name>-launch that abandons by default after 300 s."
  }

  assert {
    condition     = strcontains(output.rendered_user_data["eu-west-1a"], "'egress-launch'")
    error_message = "The boot script must be told the hook name."
  }
}

run "topic_receives_alarms_and_group_notifications" {
  command = plan

  variables {
    notification_topic_arn = "arn:aws:sns:eu-west-1:123456789012:nat-events"
  }

  assert {
    condition = alltrue([
      for alarm in aws_cloudwatch_metric_alarm.status_check :
      tolist(alarm.alarm_actions) == tolist(["arn:aws:sns:eu-west-1:123456789012:nat-events"]) && tolist(alarm.ok_actions) == tolist(["arn:aws:sns:eu-west-1:123456789012:nat-events"])
    ])
    error_message = "Alarms must notify the topic when they fire and when they clear, and do nothing else (no EC2 terminate action)."
  }

  assert {
    condition     = alltrue([for alarm in aws_cloudwatch_metric_alarm.status_check : try(length(alarm.insufficient_data_actions), 0) == 0])
    error_message = "Alarms must not notify on missing data (a group between instances)."
  }

  assert {
    condition     = alltrue([for zone in ["eu-west-1a", "eu-west-1b"] : strcontains(output.rendered_user_data[zone], "NAT_NOTIFICATION_TOPIC_ARN='arn:aws:sns:eu-west-1:123456789012:nat-events'")])
    error_message = "The boot script of every zone must be told the topic, to report route tables it could not take over."
  }

  assert {
    condition     = aws_autoscaling_notification.this[0].topic_arn == "arn:aws:sns:eu-west-1:123456789012:nat-events"
    error_message = "Group notifications must go to notification_topic_arn."
  }

  assert {
    condition     = sort(aws_autoscaling_notification.this[0].group_names) == tolist(["egress-eu-west-1a", "egress-eu-west-1b"])
    error_message = "Every group must notify."
  }

  assert {
    condition     = contains(aws_autoscaling_notification.this[0].notifications, "autoscaling:EC2_INSTANCE_LAUNCH_ERROR") && contains(aws_autoscaling_notification.this[0].notifications, "autoscaling:EC2_INSTANCE_TERMINATE")
    error_message = "Launches, launch errors and terminations must be notified."
  }
}

run "alarm_and_hook_can_be_turned_off" {
  command = plan

  variables {
    status_check_alarm        = false
    launch_lifecycle_hook     = false
    warm_pool                 = null
    health_check_grace_period = 120
  }

  assert {
    condition     = length(aws_cloudwatch_metric_alarm.status_check) == 0
    error_message = "status_check_alarm = false must create no alarm."
  }

  assert {
    condition     = alltrue([for asg in aws_autoscaling_group.this : length(asg.initial_lifecycle_hook) == 0])
    error_message = "launch_lifecycle_hook = false must create no hook."
  }

  assert {
    condition     = length(aws_autoscaling_notification.this) == 0
    error_message = "Without a topic there must be no group notification."
  }

  assert {
    condition     = strcontains(output.rendered_user_data["eu-west-1a"], "NAT_LIFECYCLE_HOOK_NAME=''")
    error_message = "The boot script must be told there is no hook (empty string)."
  }
}
