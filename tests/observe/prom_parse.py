"""Parses Prometheus text exposition from stdin with prometheus_client's parser; prints the samples as JSON."""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    out = []
    for fam in text_string_to_metric_families(sys.stdin.read()):
        for s in fam.samples:
            v = None if math.isnan(s.value) else s.value
            out.append({"family": fam.name, "type": fam.type, "name": s.name, "labels": s.labels, "value": v})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
