"""Monitoring: AWS-compatible access logs (``accesslog``) and metrics, written off the hot path."""
