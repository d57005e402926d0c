"""The feature store: sharded feature sets on a local disk or in S3."""
