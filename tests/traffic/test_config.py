"""`fastgw validate` reports every bad traffic-management field with its path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import REPO, gateway_env, write_config

ONE = {"rateLimit": 1, "burstLimit": 1}


def test_validate_reports_traffic_errors_with_paths(tmp_path: Path) -> None:
    cfg = {
        "gateway": {
            "throttle": {"rateLimit": -1, "burstLimit": 5},
            "state": {"backend": "redis", "redis": {"url": "http://x"}},
        },
        "apis": [
            {
                "name": "shop",
                "routes": [{"route": "GET /a/{id}", "integration": {"type": "MOCK"}, "apiKeyRequired": True}],
                "stages": [
                    {"name": "prod", "route_throttle": {"GET /nope": {"rateLimit": 1, "burstLimit": 1}}}
                ],
            }
        ],
        "apiKeys": [
            {"name": "k", "value": "short"},
            {"name": "k", "value": "0123456789abcdefghij"},
        ],
        "usagePlans": [
            {
                "name": "p",
                "apiStages": [
                    {"apiId": "nope", "stage": "prod"},
                    {"apiId": "shop", "stage": "dev"},
                    {
                        "apiId": "shop",
                        "stage": "prod",
                        "throttle": {"/a/GET": {"rateLimit": 1, "burstLimit": 1}},
                    },
                ],
                "quota": {"limit": 10, "period": "DAY", "offset": 2},
                "keys": ["k", "ghost"],
            }
        ],
    }
    path = tmp_path / "bad.yaml"

    def validate() -> subprocess.CompletedProcess[str]:
        write_config(path, cfg)
        return subprocess.run(
            [sys.executable, "-m", "fastgw", "validate", str(path)],
            capture_output=True,
            text=True,
            env=gateway_env(),
            cwd=str(REPO),
            timeout=30,
        )

    res = validate()
    assert res.returncode == 1
    # Type errors first (what msgspec rejects), field by field.
    assert "$.gateway.throttle.rateLimit" in res.stderr
    assert "$.apiKeys[0].value" in res.stderr
    # Fix the type errors: the semantic checks then report theirs.
    cfg["gateway"]["throttle"]["rateLimit"] = 5
    cfg["apiKeys"][0]["value"] = "abcdefghij0123456789"
    res = validate()
    assert res.returncode == 1, res.stdout
    err = res.stderr
    for where in (
        "$.gateway.state.redis.url",
        "$.apis[0].stages[0].route_throttle.GET /nope",
        "$.apiKeys[1].name",
        "$.usagePlans[0].apiStages[0].apiId",
        "$.usagePlans[0].apiStages[1].stage",
        "$.usagePlans[0].apiStages[2].throttle./a/GET",
        "$.usagePlans[0].quota.offset",
        "$.usagePlans[0].keys[1]",
    ):
        assert where in err, (where, err)
    assert "Traceback" not in err
