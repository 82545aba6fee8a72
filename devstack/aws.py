"""The S3, SNS and SQS resources the pipeline expects, created in a moto server (embedded stack, docker-compose).

On AWS, ``infra/`` creates them. ``python -m devstack.aws --endpoint-url URL [--trigger events]`` is what the
docker-compose init service runs; credentials and region come from the usual ``AWS_*`` variables.
"""

from __future__ import annotations

import argparse
import json

BUCKET = "retail-landing"
TOPIC = "retail-alerts"
# An SQS queue subscribed to the topic: how the demo and the tests read back what was published.
ALERTS_INBOX = "retail-alerts-inbox"
# Detection by events: the queue the bucket notifies of uploads under incoming/, and its dead-letter queue.
UPLOADS_QUEUE = "retail-uploads"
UPLOADS_DEAD_LETTERS = "retail-uploads-dlq"
# A message received this many times without being deleted (the watcher failing after receiving it) goes to
# the dead-letter queue, where `make health` sees it, instead of circling for ever.
MAX_RECEIVES = 5


def provision(s3, sns, sqs, *, bucket: str = BUCKET, topic: str = TOPIC, inbox: str = ALERTS_INBOX) -> str:
    """The bucket (versioned, as in production) and the topic, with an SQS inbox subscribed. Returns the topic ARN.

    Idempotent: what exists is left as it is.
    """
    existing = {entry["Name"] for entry in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        region = s3.meta.region_name
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, **location)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    topic_arn = sns.create_topic(Name=topic)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=inbox)["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)
    subscribed = {
        sub["Endpoint"] for sub in sns.list_subscriptions_by_topic(TopicArn=topic_arn).get("Subscriptions", [])
    }
    if queue_arn not in subscribed:
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn


def provision_upload_events(
    s3, sqs, *, bucket: str = BUCKET, queue: str = UPLOADS_QUEUE, dead_letters: str = UPLOADS_DEAD_LETTERS
) -> str:
    """Detection by events: the queue (with its dead-letter queue, and a policy letting only this bucket send)
    and the bucket's notification of every object created under incoming/. Returns the queue's URL.

    Idempotent. As on AWS, S3 sends an ``s3:TestEvent`` to the queue when the notification is configured.
    """
    from include.retail.platform import config

    dead_url = sqs.create_queue(QueueName=dead_letters, Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dead_arn = _queue_arn(sqs, dead_url)
    queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "UploadsFromTheLandingBucket",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "Policy": json.dumps(policy),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": str(MAX_RECEIVES)}),
            # 4 days, SQS's default: room for a weekend's outage of the triggerer.
            "MessageRetentionPeriod": "345600",
        },
    )
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "retail-uploads",
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": config.INCOMING_PREFIX}]}},
                }
            ]
        },
    )
    return queue_url


def remove_upload_events(s3, *, bucket: str = BUCKET) -> None:
    """Detection by sensor: the bucket notifies no one (the queues, if any, stay, and drain by retention)."""
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})


def _queue_arn(sqs, queue_url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def read_alerts(sqs, *, inbox: str = ALERTS_INBOX) -> list[dict]:
    """Take every alert waiting in the inbox subscribed to the topic: ``{"subject", "message"}`` each."""
    queue_url = sqs.get_queue_url(QueueName=inbox)["QueueUrl"]
    alerts = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            envelope = json.loads(message["Body"])
            alerts.append({"subject": envelope.get("Subject"), "message": envelope.get("Message")})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return alerts


def main() -> None:
    import boto3

    parser = argparse.ArgumentParser(prog="python -m devstack.aws", description=__doc__)
    parser.add_argument("--endpoint-url", required=True, help="the moto server, e.g. http://moto:5000")
    parser.add_argument("--bucket", default=BUCKET)
    parser.add_argument("--topic", default=TOPIC)
    parser.add_argument(
        "--trigger",
        choices=["sensor", "events"],
        default="sensor",
        help="events: also the upload queue and the bucket's notification (and print the queue's URL)",
    )
    args = parser.parse_args()
    s3, sns, sqs = (boto3.client(service, endpoint_url=args.endpoint_url) for service in ("s3", "sns", "sqs"))
    print(provision(s3, sns, sqs, bucket=args.bucket, topic=args.topic))
    if args.trigger == "events":
        print(provision_upload_events(s3, sqs, bucket=args.bucket))
    else:
        remove_upload_events(s3, bucket=args.bucket)


if __name__ == "__main__":
    main()
