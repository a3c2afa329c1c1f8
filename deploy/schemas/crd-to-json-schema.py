"""Turns a CustomResourceDefinition into the JSON Schema of its served version, as the
API server would validate a resource of it, strictly (see README.md):

    crd-to-json-schema.py CRD.yaml > kind.json

- the version's openAPIV3Schema is the schema, with apiVersion and kind fixed to the
  CRD's group/version and kind;
- an object with properties refuses other properties unless it carries
  x-kubernetes-preserve-unknown-fields (the API server prunes them: a misspelt field
  would silently vanish);
- x-kubernetes-int-or-string accepts an integer or a string;
- a pattern with Go's inline flags, e.g. (?i), which JSON Schema's ECMA-262 regular
  expressions lack, is left out (only partial_response_strategy has one).
"""

import json
import sys

import yaml


def strict(node):
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: strict(value) for key, value in node.items()}
    if isinstance(node.get("pattern"), str) and "(?" in node["pattern"]:
        del node["pattern"]
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    return node


def main(path):
    with open(path, encoding="utf-8") as source:
        crd = next(doc for doc in yaml.safe_load_all(source) if doc)
    spec = crd["spec"]
    version = next(v for v in spec["versions"] if v.get("served") and v.get("storage"))
    schema = strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"] = {"const": f"{spec['group']}/{version['name']}"}
    schema["properties"]["kind"] = {"const": spec["names"]["kind"]}
    schema["properties"]["metadata"] = {"type": "object"}
    schema.setdefault("required", [])
    for field in ("apiVersion", "kind", "spec"):
        if field not in schema["required"]:
            schema["required"].append(field)
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"{spec['names']['kind']} ({spec['group']}/{version['name']}, "
        f"prometheus-operator {crd['metadata']['annotations'].get('operator.prometheus.io/version')})",
        **schema,
    }
    json.dump(schema, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
