"""performance_report's HTML files in the prod bucket (the local deployment writes to reports/)."""

from pydantic import Field

from trading_assets.resources import ReportStoreResource
from trading_assets.storage.s3_layout import is_missing, s3_client


class S3ReportStoreResource(ReportStoreResource):
    """performance_report's HTML files in the bucket (prod): ``s3://<bucket>/<prefix>/reports/``.

    One PUT per file, so a reader gets the old report or the new one, never half. Endpoint and
    credentials come from the standard AWS chain (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)."""

    bucket: str = Field(description="the deployment's bucket (TRADING_ASSETS_S3_BUCKET)")
    prefix: str = Field(default="", description="key prefix inside the bucket")
    directory: str = Field(default="reports", description="folder under the prefix")

    def key(self, name: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, self.directory, name) if p.strip("/"))

    def write(self, name: str, html: str) -> str:
        key = self.key(name)
        s3_client().put_object(
            Bucket=self.bucket,
            Key=key,
            Body=html.encode("utf-8"),
            ContentType="text/html; charset=utf-8",
        )
        return f"s3://{self.bucket}/{key}"

    def read(self, name: str) -> str | None:
        """The report ``name`` as written, or None when the bucket has none (the read API)."""
        client = s3_client()
        key = self.key(name)
        try:
            body = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if is_missing(client, self.bucket, key, exc):
                return None
            raise
        return body.decode("utf-8")
