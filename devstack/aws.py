"""The S3 and SNS resources the pipeline expects, created in a moto server (embedded stack, docker-compose).

On AWS, ``infra/`` creates them. ``python -m devstack.aws --endpoint-url URL`` is what the docker-compose init
service runs; credentials and region come from the usual ``AWS_*`` variables.
"""

from __future__ import annotations

import argparse

BUCKET = "retail-landing"
TOPIC = "retail-alerts"
# An SQS queue subscribed to the topic: how the demo and the tests read back what was published.
ALERTS_INBOX = "retail-alerts-inbox"


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
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    subscribed = {
        sub["Endpoint"] for sub in sns.list_subscriptions_by_topic(TopicArn=topic_arn).get("Subscriptions", [])
    }
    if queue_arn not in subscribed:
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn


def read_alerts(sqs, *, inbox: str = ALERTS_INBOX) -> list[dict]:
    """Take every alert waiting in the inbox subscribed to the topic: ``{"subject", "message"}`` each."""
    import json

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
    args = parser.parse_args()
    s3, sns, sqs = (boto3.client(service, endpoint_url=args.endpoint_url) for service in ("s3", "sns", "sqs"))
    print(provision(s3, sns, sqs, bucket=args.bucket, topic=args.topic))


if __name__ == "__main__":
    main()
