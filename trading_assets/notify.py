"""Notifications and secrets: where alerts go, and where their targets and any keys come from.

``NotifierResource.send(subject, message, *, dedupe_key=None)`` delivers one notification:

- ``log`` (the default): a WARNING line in the run's or sensor's log (python logging outside Dagster);
- ``sns``: SNS ``Publish`` to a topic ARN;
- ``ses``: SES ``SendEmail`` from a verified sender to one or more recipients.

Both AWS kinds go through boto3 with the standard AWS chain (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID``,
``AWS_REGION``, ``AWS_ENDPOINT_URL``, an instance role...), so tests point them at moto's server the
way production points them at AWS. A refusal or an unreachable endpoint raises
:class:`NotificationError` naming the target.

Secrets. No target or key lives in code or a config file. The targets come from environment
variables (settings.SNS_TOPIC_ARN, SES_SENDER, SES_RECIPIENTS, through ``dg.EnvVar``)
or, when :data:`SECRET_ID` names an AWS Secrets Manager secret, from that secret: a JSON object with
the keys ``sns_topic_arn``, ``ses_sender``, ``ses_recipients`` (a key the secret lacks falls back to
the variable). :class:`SecretsResource` reads such a secret for anything else (an API key).
A value read from a secret is never logged and never put in an error: an error names the target by
where it came from ("SNS topic <secret 'prod/alerts', key 'sns_topic_arn'>"), a secret value
quoted back by AWS is replaced by ``***``, and botocore's DEBUG logging of request parameters and
response bodies is held at INFO during these calls (:data:`WIRE_LOGGERS`). Values from variables
are configuration, not secrets, and are named as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from trading_assets import settings
from trading_assets.settings import (  # the variables, named in descriptions and errors
    NOTIFIER,
    SECRET_ID,
    SES_RECIPIENTS,
    SES_SENDER,
    SNS_TOPIC_ARN,
)

# Keys of the notifier's secret.
SECRET_SNS_TOPIC_ARN = "sns_topic_arn"
SECRET_SES_SENDER = "ses_sender"
SECRET_SES_RECIPIENTS = "ses_recipients"

REDACTED = "***"
# SNS: a subject is at most 100 printable ASCII characters on one line.
SNS_SUBJECT_MAX = 100
# A FIFO topic's messages need a group; every notification of this project is one stream.
SNS_FIFO_GROUP = "trading_assets"
DEDUPE_ATTRIBUTE = "dedupe_key"
# botocore logs each request's parameters and each response body at DEBUG: a secret's value, or a
# target read from one, would be in a DEBUG log. These loggers are held at INFO during our calls.
WIRE_LOGGERS = ("botocore.endpoint", "botocore.parsers", "botocore.auth")

module_log = logging.getLogger(__name__)


class NotificationError(RuntimeError):
    """SNS or SES refused the notification or could not be reached. The message names the target
    (or where a secret target came from), never a secret value."""


class SecretError(RuntimeError):
    """The secret could not be read, or is not a JSON object. The message names the secret id and
    key, never a value."""


# --- secrets ----------------------------------------------------------------------------------


@contextmanager
def quiet_wire_logs() -> Iterator[None]:
    """No DEBUG request/response logging from botocore inside the block (see WIRE_LOGGERS)."""
    loggers = [logging.getLogger(name) for name in WIRE_LOGGERS]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)


def _aws_client(service: str, region: str | None = None):
    import boto3

    return boto3.session.Session().client(service, region_name=region)


def _aws_error(exc: Exception) -> str:
    """'ResourceNotFoundException: ...' for a ClientError, else the exception's type and text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and isinstance(response.get("Error"), dict):
        error = response["Error"]
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value (longest first) replaced by ***."""
    for value in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


class SecretsResource(dg.ConfigurableResource):
    """A JSON object kept in AWS Secrets Manager, read once per resource instance.

    ``values()`` returns it as a dict; ``get(key)`` one entry. Only the id is configuration: the
    values never appear in the UI, a log line or an error.
    """

    secret_id: str = Field(description="the secret's name or ARN (TRADING_ASSETS_SECRET_ID)")
    region: str | None = Field(
        default=None, description="the secret's region; unset: the AWS chain's (AWS_REGION)"
    )

    _values: dict[str, Any] | None = PrivateAttr(default=None)

    def values(self) -> dict[str, Any]:
        if self._values is None:
            self._values = self._read()
        return dict(self._values)

    def get(self, key: str) -> Any:
        values = self.values()
        if key not in values:
            raise SecretError(
                f"secret {self.secret_id!r} has no key {key!r}; it has {sorted(values)}"
            )
        return values[key]

    def _read(self) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            with quiet_wire_logs():
                answer = _aws_client("secretsmanager", self.region).get_secret_value(
                    SecretId=self.secret_id
                )
        except (BotoCoreError, ClientError) as exc:
            # AWS's own message names the id at most, never a value.
            raise SecretError(
                f"cannot read secret {self.secret_id!r} from AWS Secrets Manager: {_aws_error(exc)}"
            ) from None
        text = answer.get("SecretString")
        if text is None:
            raise SecretError(
                f"secret {self.secret_id!r} holds binary data; store a JSON object as its string"
            )
        try:
            values = json.loads(text)
        except ValueError:
            values = None  # json's message quotes the text: not repeated here
        if not isinstance(values, dict):
            raise SecretError(
                f"secret {self.secret_id!r} is not a JSON object (e.g. "
                f'{{"{SECRET_SNS_TOPIC_ARN}": "arn:aws:sns:..."}}); its content is not shown'
            )
        return values


# --- targets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    """Where notifications go, and for each value that came from a secret, where (for messages)."""

    sns_topic_arn: str | None = None
    ses_sender: str | None = None
    ses_recipients: tuple[str, ...] = ()
    # key -> "secret 'id', key 'k'" for the values read from a secret
    from_secret: tuple[tuple[str, str], ...] = ()

    def secret_values(self) -> list[str]:
        keys = dict(self.from_secret)
        values: list[str] = []
        if SECRET_SNS_TOPIC_ARN in keys and self.sns_topic_arn:
            values.append(self.sns_topic_arn)
        if SECRET_SES_SENDER in keys and self.ses_sender:
            values.append(self.ses_sender)
        if SECRET_SES_RECIPIENTS in keys:
            values.extend(self.ses_recipients)
        return values

    def describe(self, key: str) -> str:
        """The target as an error may name it: its value, or where the secret keeps it."""
        origin = dict(self.from_secret).get(key)
        if origin is not None:
            return f"<{origin}>"
        if key == SECRET_SNS_TOPIC_ARN:
            return repr(self.sns_topic_arn)
        if key == SECRET_SES_SENDER:
            return repr(self.ses_sender)
        return repr(", ".join(self.ses_recipients))


def _addresses(value: Any) -> tuple[str, ...]:
    """Recipients from 'a@x, b@y' or a JSON list."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def sns_region(topic_arn: str) -> str | None:
    """The region in ``arn:aws:sns:<region>:<account>:<name>`` (a topic is published to there)."""
    parts = topic_arn.split(":")
    return (parts[3] or None) if len(parts) >= 6 and parts[2] == "sns" else None


def sns_subject(subject: str) -> str:
    """SNS's subject rules: printable ASCII, one line, at most 100 characters."""
    text = re.sub(r"[^\x20-\x7e]", " ", subject).strip()
    return text[: SNS_SUBJECT_MAX - 3] + "..." if len(text) > SNS_SUBJECT_MAX else text


# --- the notifier -------------------------------------------------------------------------------


class NotifierResource(dg.ConfigurableResource):
    """Sends notifications: ``log`` (default), ``sns`` (a topic ARN) or ``ses`` (email).

    Targets: the fields below, set from TRADING_ASSETS_* variables with ``dg.EnvVar``; with
    ``secret_id`` set, the secret's keys ``sns_topic_arn``, ``ses_sender`` and ``ses_recipients``
    take precedence (the module docstring says why nothing of it is ever shown).
    """

    kind: str = Field(default=settings.DEFAULT_NOTIFIER, description="log | sns | ses")
    sns_topic_arn: str | None = Field(
        default=None, description=f"sns: the topic ARN ({SNS_TOPIC_ARN})"
    )
    ses_sender: str | None = Field(
        default=None, description=f"ses: a verified sender address ({SES_SENDER})"
    )
    ses_recipients: str | None = Field(
        default=None, description=f"ses: comma-separated recipient addresses ({SES_RECIPIENTS})"
    )
    secret_id: str | None = Field(
        default=None,
        description=f"an AWS Secrets Manager secret with the targets as JSON ({SECRET_ID})",
    )
    subject_prefix: str = Field(default="[trading_assets]", description="put before every subject")

    _log: Any = PrivateAttr(default=None)
    _targets: Targets | None = PrivateAttr(default=None)
    _clients: dict[str, Any] = PrivateAttr(default_factory=dict)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._log = context.log

    def targets(self) -> Targets:
        """The targets from the fields and, with ``secret_id``, the secret (read once)."""
        if self._targets is not None:
            return self._targets
        values: dict[str, Any] = {
            SECRET_SNS_TOPIC_ARN: self.sns_topic_arn,
            SECRET_SES_SENDER: self.ses_sender,
            SECRET_SES_RECIPIENTS: self.ses_recipients,
        }
        origin: list[tuple[str, str]] = []
        if self.secret_id:
            secret = SecretsResource(secret_id=self.secret_id).values()
            for key in values:
                if secret.get(key) not in (None, "", []):
                    values[key] = secret[key]
                    origin.append((key, f"secret {self.secret_id!r}, key {key!r}"))
        self._targets = Targets(
            sns_topic_arn=str(values[SECRET_SNS_TOPIC_ARN] or "").strip() or None,
            ses_sender=str(values[SECRET_SES_SENDER] or "").strip() or None,
            ses_recipients=_addresses(values[SECRET_SES_RECIPIENTS]),
            from_secret=tuple(origin),
        )
        return self._targets

    def send(
        self, subject: str, message: str, *, dedupe_key: str | None = None, log: Any = None
    ) -> str | None:
        """Deliver one notification; returns SNS's or SES's message id (None for ``log``).

        ``dedupe_key`` (an alert's id) travels with it: an SNS message attribute (and the
        deduplication id on a FIFO topic), the email's last line, the log line. ``log``: where the
        ``log`` kind writes (a sensor passes ``context.log``); by default the resource's.
        """
        kind = self.kind.strip().lower()
        if kind not in settings.NOTIFIERS:
            raise settings.ConfigurationError(
                f"{NOTIFIER}={self.kind!r} is not one of {', '.join(settings.NOTIFIERS)}"
            )
        subject = f"{self.subject_prefix} {subject}".strip()
        if kind == "log":
            line = f"{subject}\n{message}" + (f"\n(alert id {dedupe_key})" if dedupe_key else "")
            (log or self._log or module_log).warning(line)
            return None
        if kind == "sns":
            return self._publish_sns(subject, message, dedupe_key)
        return self._send_ses(subject, message, dedupe_key)

    def _client(self, service: str, region: str | None = None):
        key = f"{service}:{region}"
        if key not in self._clients:
            self._clients[key] = _aws_client(service, region)
        return self._clients[key]

    def _publish_sns(self, subject: str, message: str, dedupe_key: str | None) -> str:
        targets = self.targets()
        topic = targets.sns_topic_arn
        if not topic:
            raise settings.ConfigurationError(
                f"the sns notifier needs a topic: set {SNS_TOPIC_ARN}, or key "
                f"{SECRET_SNS_TOPIC_ARN!r} in the secret {SECRET_ID} names"
            )
        request: dict[str, Any] = {
            "TopicArn": topic,
            "Subject": sns_subject(subject),
            "Message": message,
        }
        if dedupe_key:
            request["MessageAttributes"] = {
                DEDUPE_ATTRIBUTE: {"DataType": "String", "StringValue": dedupe_key}
            }
        if topic.endswith(".fifo"):
            request["MessageGroupId"] = SNS_FIFO_GROUP
            request["MessageDeduplicationId"] = hashlib.sha256(
                (dedupe_key or f"{subject}\n{message}").encode()
            ).hexdigest()
        answer = self._call("sns", sns_region(topic), "publish", request, targets)
        return answer["MessageId"]

    def _send_ses(self, subject: str, message: str, dedupe_key: str | None) -> str:
        targets = self.targets()
        if not targets.ses_sender or not targets.ses_recipients:
            raise settings.ConfigurationError(
                f"the ses notifier needs a sender and recipients: set {SES_SENDER} and "
                f"{SES_RECIPIENTS}, or keys {SECRET_SES_SENDER!r} and {SECRET_SES_RECIPIENTS!r} "
                f"in the secret {SECRET_ID} names"
            )
        body = message + (f"\n\nalert id: {dedupe_key}" if dedupe_key else "")
        request = {
            "Source": targets.ses_sender,
            "Destination": {"ToAddresses": list(targets.ses_recipients)},
            "Message": {
                "Subject": {"Data": subject, "Charset": "UTF-8"},
                "Body": {"Text": {"Data": body, "Charset": "UTF-8"}},
            },
        }
        answer = self._call("ses", None, "send_email", request, targets)
        return answer["MessageId"]

    def _call(
        self,
        service: str,
        region: str | None,
        operation: str,
        request: dict[str, Any],
        targets: Targets,
    ) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            with quiet_wire_logs():
                return getattr(self._client(service, region), operation)(**request)
        except (BotoCoreError, ClientError) as exc:
            if service == "sns":
                target = f"SNS topic {targets.describe(SECRET_SNS_TOPIC_ARN)}"
            else:
                target = (
                    f"SES sender {targets.describe(SECRET_SES_SENDER)} to recipients "
                    f"{targets.describe(SECRET_SES_RECIPIENTS)}"
                )
            detail = redact(_aws_error(exc), targets.secret_values())
            # from None: the chained botocore error would quote a secret target unredacted.
            raise NotificationError(f"{service} {operation} to {target} failed: {detail}") from None
