"""Checks of a `helm template` rendering that schema validation cannot make.

    check-manifests.py split RENDERED.yaml DIR   one file per resource in DIR: the
                                                 Prometheus Operator's kinds as
                                                 <kind>-<name>.yaml, the others as
                                                 core-<kind>-<name>.yaml
    check-manifests.py check RENDERED.yaml       names, labels and probes (below)

What `check` refuses:
- a Service name that is not an RFC 1035 label (at most 63 characters): the API server
  refuses it;
- a StatefulSet name over 52 characters: its pods get the label controller-revision-hash,
  the name plus "-" and a 10-character hash, which must fit in 63;
- a label value over 63 characters or with characters a label cannot hold;
- a bridge container without a startup probe, or, in a StatefulSet, one whose budget
  (failureThreshold x periodSeconds) is too short to read back a full spool
  (config.spool.max_bytes) at 10 MiB/s before the listener binds.

Exits non-zero, listing every problem, when one is found.
"""

import os
import re
import sys
import tomllib

import yaml

RFC1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
STATEFULSET_NAME_MAX = 63 - len("-") - 10
SPOOL_MAX_BYTES_DEFAULT = 1 << 30
SLOWEST_REPLAY_BYTES_PER_SECOND = 10 << 20
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}


def resources(path):
    with open(path, encoding="utf-8") as rendered:
        return [doc for doc in yaml.safe_load_all(rendered) if doc]


def split(path, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for doc in resources(path):
        kind = doc["kind"]
        prefix = "" if kind in OPERATOR_KINDS else "core-"
        name = f"{prefix}{kind.lower()}-{doc['metadata']['name']}.yaml"
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as out:
            yaml.safe_dump(doc, out, sort_keys=False)


def label_maps(doc):
    """Every map of labels in a resource, with where it is."""
    yield "metadata.labels", doc["metadata"].get("labels") or {}
    spec = doc.get("spec") or {}
    selector = spec.get("selector") or {}
    if isinstance(selector, dict):
        yield "spec.selector", selector.get("matchLabels", selector)
    template = spec.get("template") or {}
    yield "spec.template.metadata.labels", (template.get("metadata") or {}).get("labels") or {}
    for claim in spec.get("volumeClaimTemplates") or []:
        yield "spec.volumeClaimTemplates.metadata.labels", claim["metadata"].get("labels") or {}


def spool_max_bytes(docs):
    for doc in docs:
        if doc["kind"] == "ConfigMap" and "vizion-bridge.toml" in doc.get("data", {}):
            config = tomllib.loads(doc["data"]["vizion-bridge.toml"])
            return config.get("spool", {}).get("max_bytes", SPOOL_MAX_BYTES_DEFAULT)
    return SPOOL_MAX_BYTES_DEFAULT


def check(path):
    docs = resources(path)
    problems = []
    for doc in docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        where = f"{kind} {name}"
        if kind == "Service" and not RFC1035_LABEL.match(name):
            problems.append(f"{where}: a Service name must be an RFC 1035 label (<= 63)")
        if kind == "StatefulSet" and len(name) > STATEFULSET_NAME_MAX:
            problems.append(
                f"{where}: {len(name)} characters; over {STATEFULSET_NAME_MAX} its pods' "
                "controller-revision-hash label is too long"
            )
        for place, labels in label_maps(doc):
            for key, value in labels.items():
                if not LABEL_VALUE.match(str(value)) or len(str(value)) > 63:
                    problems.append(f"{where}: {place} {key}={value!r} is no label value")
        if kind in ("Deployment", "StatefulSet"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                probe = container.get("startupProbe")
                if not probe:
                    problems.append(f"{where}: container {container['name']} has no startupProbe")
                    continue
                if kind == "StatefulSet":
                    budget = probe["failureThreshold"] * probe["periodSeconds"]
                    needed = spool_max_bytes(docs) / SLOWEST_REPLAY_BYTES_PER_SECOND
                    if budget < needed:
                        problems.append(
                            f"{where}: the startup probe gives {budget}s, reading back a "
                            f"full spool at 10 MiB/s takes {needed:.0f}s"
                        )
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv):
    if len(argv) == 4 and argv[1] == "split":
        split(argv[2], argv[3])
        return 0
    if len(argv) == 3 and argv[1] == "check":
        return check(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
