"""BatchBridge: run SaaS vendors' asynchronous batch jobs to completion on AWS serverless."""

__version__ = "0.1.0"
