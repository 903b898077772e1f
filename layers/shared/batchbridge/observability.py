"""Logger, Tracer and Metrics, created once and imported everywhere."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="batchbridge")
tracer = Tracer(service="batchbridge")
metrics = Metrics(namespace="BatchBridge", service="batchbridge")
