#!/usr/bin/env python3
"""Validates a SARIF log against the SARIF 2.1.0 JSON schema (vendored beside this script,
from the MIT-licensed npm package @microsoft/jest-sarif: lib/schemas/sarif-2.1.0-rtm.5.json).

usage: validate_sarif.py FILE.sarif   (needs `pip install jsonschema`; exit 0 when valid)
"""
import json, sys
from pathlib import Path

import jsonschema

schema = json.loads((Path(__file__).resolve().parent / "sarif-schema-2.1.0.json").read_text())
log = json.loads(Path(sys.argv[1]).read_text())
validator = jsonschema.validators.validator_for(schema)(schema)
errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
for error in errors:
    print(f"{'/'.join(map(str, error.path))}: {error.message}", file=sys.stderr)
# GitHub code scanning requirements beyond the schema.
run = log["runs"][0]
assert run["tool"]["driver"]["name"], "driver name required"
for result in run.get("results", []):
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1
    assert result.get("partialFingerprints"), "partialFingerprints required"
sys.exit(1 if errors else 0)
