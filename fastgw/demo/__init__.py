"""The embedded demo: a config and the echo backend it proxies to."""

from __future__ import annotations

from pathlib import Path

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")
