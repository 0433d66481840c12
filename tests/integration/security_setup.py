"""The identities the security tests share: their tokens, and a YAML config that grants each its part."""

from __future__ import annotations

from pathlib import Path

import yaml

from gearman_gateway.security import hash_token

#: identity -> token (made for the tests; the config holds only their hashes)
TOKENS = {name: f"{name}-token-for-the-tests-0123456789" for name in ("ops", "app", "imgworker", "acme", "globex")}


def policy() -> dict:
    def token(name: str) -> str:
        return hash_token(TOKENS[name])

    return {
        "anonymous": {"submit": ["public.*"], "work": ["public.*"], "admin": ["read"]},
        "identities": {
            "ops": {"token": token("ops"), "submit": ["*"], "work": ["*"], "admin": ["all"]},
            "app": {"token": token("app"), "submit": ["resize", "thumb.*"]},
            "imgworker": {"token": token("imgworker"), "work": ["resize"], "max_connections": 2},
            "acme": {"token": token("acme"), "tenant": "acme", "submit": ["*"], "work": ["*"],
                     "admin": ["read", "cancel", "maxqueue"]},
            "globex": {"token": token("globex"), "tenant": "globex", "submit": ["*"], "work": ["*"],
                       "admin": ["read"]},
        },
        "tenants": {"acme": {"max_queued_jobs": 3}, "globex": {"max_connections": 2}},
    }  # fmt: skip


def write_config(directory: Path, **more: object) -> str:
    path = directory / "security.yaml"
    path.write_text(yaml.safe_dump({"security": policy(), **more}))
    return str(path)
