"""The notifier and secrets resources against moto's real SNS, SES and Secrets Manager server.

Targets reach the resources the way definitions.py hands them over: ``dg.EnvVar`` fields resolved
by Dagster from the environment, or the secret TRADING_ASSETS_SECRET_ID names. What SNS published
is read from an SQS queue subscribed to the topic; what SES sent, from moto's own record
(``/moto-api/data.json``). No secret value may appear in a log line (captured at DEBUG, botocore
included) or an error.
"""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid

import boto3
import dagster as dg
import pytest

from trading_assets import settings
from trading_assets.notify import (
    SECRET_ID,
    SES_RECIPIENTS,
    SES_SENDER,
    SNS_TOPIC_ARN,
    NotificationError,
    NotifierResource,
    SecretError,
    SecretsResource,
    sns_region,
    sns_subject,
)

API_KEY = "sk-live-3f9a0c7e51b24d6a"  # a made-up key kept in the secret next to the targets


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def topic_with_queue(fifo: bool = False) -> tuple[str, str]:
    """A new SNS topic with an SQS queue subscribed (raw delivery off: SNS's JSON envelope)."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    suffix = ".fifo" if fifo else ""
    attributes = {"FifoTopic": "true", "ContentBasedDeduplication": "false"} if fifo else {}
    topic = sns.create_topic(Name=unique("alerts") + suffix, Attributes=attributes)["TopicArn"]
    queue = sqs.create_queue(
        QueueName=unique("inbox") + suffix, Attributes={"FifoQueue": "true"} if fifo else {}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, queue


def received(queue: str) -> list[dict]:
    """The SNS envelopes waiting in ``queue`` (drained)."""
    sqs = boto3.client("sqs")
    out = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not batch.get("Messages"):
            return out
        for message in batch["Messages"]:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def ses_sent(endpoint: str, sender: str) -> list[dict]:
    """What moto's SES recorded as sent from ``sender``."""
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as answer:
        data = json.load(answer)
    return [m for m in data["ses"]["Message"] if m["source"] == sender]


def resolved(resource: dg.ConfigurableResource):
    """The resource as a run or sensor gets it: dg.EnvVar fields read from the environment."""
    with dg.build_resources({"r": resource}) as resources:
        return resources.r


def create_secret(values: dict) -> str:
    name = unique("trading/notify")
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(values))
    return name


# --- secrets ---------------------------------------------------------------------------------------


def capturing_wire_logs(caplog) -> None:
    """DEBUG capture of every logger; proven by botocore logging a secret the test itself stores
    (a request's parameters), then cleared: from here on only the code under test logs."""
    caplog.set_level(logging.DEBUG)
    create_secret({"probe": API_KEY})
    assert API_KEY in caplog.text
    caplog.clear()


def test_secrets_resource_resolves_a_json_secret(aws_env, monkeypatch, caplog):
    name = create_secret({"api_key": API_KEY, "region": "eu-west-1"})
    capturing_wire_logs(caplog)
    monkeypatch.setenv(SECRET_ID, name)
    secrets = resolved(SecretsResource(secret_id=dg.EnvVar(SECRET_ID)))
    assert secrets.values() == {"api_key": API_KEY, "region": "eu-west-1"}
    assert secrets.get("api_key") == API_KEY
    with pytest.raises(SecretError, match=r"has no key 'password'; it has \['api_key', 'region'\]"):
        secrets.get("password")
    assert API_KEY not in repr(secrets) and API_KEY not in caplog.text
    assert "GetSecretValue" in caplog.text  # botocore did log the call, without its body


def test_secret_errors_name_the_secret_never_its_content(aws_env, caplog):
    name = unique("trading/not-json")
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=f"key={API_KEY}")
    capturing_wire_logs(caplog)
    with pytest.raises(SecretError, match=r"cannot read secret 'no/such/secret'.*ResourceNotFound"):
        SecretsResource(secret_id="no/such/secret").values()
    with pytest.raises(SecretError, match="is not a JSON object") as error:
        SecretsResource(secret_id=name).values()
    assert API_KEY not in str(error.value) and API_KEY not in caplog.text
    assert (
        error.value.__cause__ is None
        and error.value.__context__ is None
        or (API_KEY not in str(error.value.__context__))
    )


# --- SNS ------------------------------------------------------------------------------------------


def test_sns_publishes_subject_message_and_dedupe_key(aws_env, monkeypatch):
    topic, queue = topic_with_queue()
    monkeypatch.setenv(SNS_TOPIC_ARN, topic)
    notifier = resolved(NotifierResource(kind="sns", sns_topic_arn=dg.EnvVar(SNS_TOPIC_ARN)))
    message_id = notifier.send(
        "AAPL long stop hit at 97.00", "stdev long position\nlatest 97.00", dedupe_key="a|b|c"
    )
    [envelope] = received(queue)
    assert envelope["MessageId"] == message_id
    assert envelope["Subject"] == "[trading_assets] AAPL long stop hit at 97.00"
    assert envelope["Message"] == "stdev long position\nlatest 97.00"
    assert envelope["MessageAttributes"]["dedupe_key"] == {"Type": "String", "Value": "a|b|c"}


def test_sns_fifo_topic_gets_a_group_and_deduplication_id(aws_env):
    topic, queue = topic_with_queue(fifo=True)
    notifier = NotifierResource(kind="sns", sns_topic_arn=topic)
    notifier.send("first", "one", dedupe_key="id-1")
    notifier.send("second", "two", dedupe_key="id-2")
    assert [e["Message"] for e in received(queue)] == ["one", "two"]


def test_sns_targets_from_the_secret_never_logged_or_shown(aws_env, monkeypatch, caplog):
    topic, queue = topic_with_queue()
    name = create_secret({"sns_topic_arn": topic, "api_key": API_KEY})
    capturing_wire_logs(caplog)
    monkeypatch.setenv(SECRET_ID, name)
    monkeypatch.setenv(SNS_TOPIC_ARN, "arn:aws:sns:us-east-1:123456789012:the-variable-loses")
    notifier = resolved(
        NotifierResource(
            kind="sns", sns_topic_arn=dg.EnvVar(SNS_TOPIC_ARN), secret_id=dg.EnvVar(SECRET_ID)
        )
    )
    notifier.send("from the secret", "body")
    assert topic not in caplog.text  # before the test reads the queue (which logs the ARN)
    assert [e["Message"] for e in received(queue)] == ["body"]
    boto3.client("sns").delete_topic(TopicArn=topic)
    caplog.clear()
    # A refused publish names where the target came from, not the target.
    with pytest.raises(NotificationError) as error:
        notifier.send("again", "body")
    text = str(error.value)
    assert f"sns publish to SNS topic <secret '{name}', key 'sns_topic_arn'> failed: " in text
    assert "NotFound" in text
    for value in (topic, API_KEY):
        assert value not in text and value not in caplog.text
    assert error.value.__cause__ is None and error.value.__suppress_context__


def test_sns_errors_name_the_target_from_a_variable(aws_env):
    missing = "arn:aws:sns:us-east-1:123456789012:" + unique("gone")
    with pytest.raises(NotificationError, match=rf"sns publish to SNS topic '{missing}' failed: "):
        NotifierResource(kind="sns", sns_topic_arn=missing).send("s", "m")


def test_unreachable_endpoint_is_a_notification_error(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    topic = "arn:aws:sns:us-east-1:123456789012:alerts"
    with pytest.raises(NotificationError, match=rf"SNS topic '{topic}' failed: EndpointConnection"):
        NotifierResource(kind="sns", sns_topic_arn=topic).send("s", "m")


# --- SES ------------------------------------------------------------------------------------------


def test_ses_sends_from_the_verified_sender(aws_env, monkeypatch):
    sender = f"{unique('alerts')}@example.com"
    boto3.client("ses").verify_email_identity(EmailAddress=sender)
    monkeypatch.setenv(SES_SENDER, sender)
    monkeypatch.setenv(SES_RECIPIENTS, "trader@example.com, desk@example.com")
    notifier = resolved(
        NotifierResource(
            kind="ses", ses_sender=dg.EnvVar(SES_SENDER), ses_recipients=dg.EnvVar(SES_RECIPIENTS)
        )
    )
    notifier.send("NVDA at its entry", "watchlist plan", dedupe_key="watchlist|NVDA|x")
    [mail] = ses_sent(aws_env, sender)
    assert mail["subject"] == "[trading_assets] NVDA at its entry"
    assert mail["body"] == "watchlist plan\n\nalert id: watchlist|NVDA|x"
    assert mail["destinations"]["ToAddresses"] == ["trader@example.com", "desk@example.com"]


def test_ses_targets_from_the_secret_and_an_unverified_sender(aws_env, caplog):
    sender = f"{unique('unverified')}@example.com"
    name = create_secret({"ses_sender": sender, "ses_recipients": ["trader@example.com"]})
    capturing_wire_logs(caplog)
    notifier = NotifierResource(kind="ses", secret_id=name)
    with pytest.raises(NotificationError, match="MessageRejected") as error:
        notifier.send("s", "m")
    text = str(error.value)
    assert f"SES sender <secret '{name}', key 'ses_sender'> to recipients <secret" in text
    assert sender not in text and sender not in caplog.text
    boto3.client("ses").verify_email_identity(EmailAddress=sender)
    notifier.send("now verified", "m")
    assert [m["subject"] for m in ses_sent(aws_env, sender)] == ["[trading_assets] now verified"]


# --- log and configuration ------------------------------------------------------------------------


def test_log_notifier_is_the_default(caplog):
    caplog.set_level(logging.WARNING)
    assert NotifierResource().send("hello", "world", dedupe_key="k1") is None
    assert "[trading_assets] hello\nworld\n(alert id k1)" in caplog.text


def test_missing_targets_and_unknown_kind_say_what_to_set():
    with pytest.raises(settings.ConfigurationError, match=SNS_TOPIC_ARN):
        NotifierResource(kind="sns").send("s", "m")
    with pytest.raises(settings.ConfigurationError, match=f"{SES_SENDER} and {SES_RECIPIENTS}"):
        NotifierResource(kind="ses", ses_sender="a@example.com").send("s", "m")
    with pytest.raises(settings.ConfigurationError, match="'pager' is not one of log, sns, ses"):
        NotifierResource(kind="pager").send("s", "m")


def test_sns_helpers():
    assert sns_region("arn:aws:sns:eu-west-1:123456789012:alerts") == "eu-west-1"
    assert sns_region("not-an-arn") is None
    assert sns_subject("a\nb – c") == "a b   c"
    assert len(sns_subject("x" * 300)) == 100
