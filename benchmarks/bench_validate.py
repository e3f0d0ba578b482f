"""How long `mlsync validate` takes on a generated 1,000-resource desired-state file.

    .venv/bin/python benchmarks/bench_validate.py [--resources N] [--repeat R] [--keep DIR] [--json]

The file holds 50 connectors, 100 model groups and the rest as model versions (a tenth of the
models remote, the others URL models with three versions each). It reports the best of R in-process
`mlsync.input.load` runs (YAML, interpolation, typed model, cross-field checks) and one
end-to-end `mlsync validate` in a fresh interpreter (Python start-up and imports included).
Goal (SPEC §8 / issue 3): well under a second for 1,000 resources.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

HASH = "c15f0d2e62d872be5b5bc6c84d2e0f4921541e29fefbef51d59cc10a8ae30e0f"


def generate(resources: int = 1000, connectors: int = 50, groups: int = 100) -> tuple[str, dict]:
    """The YAML text of a valid file with `resources` resources in all, and the counts of each kind."""
    versions_left = resources - connectors - groups
    lines = ["# yaml-language-server: $schema=../schemas/mlsync.schema.json",
             "version: 1", "stack: bench", "", "connectors:"]
    for i in range(connectors):
        lines += [
            f"  - name: connector-{i}",
            f"    description: Embedding service {i}",
            "    protocol: http",
            "    parameters:",
            "      model: text-embedding-3-small",
            "      dimensions: 384",
            "    credential:",
            "      api_key: ${env:BENCH_API_KEY:-dummy-key}",
            "    actions:",
            "      - action_type: predict",
            "        method: POST",
            f"        url: http://127.0.0.1:8089/v1/{i}/embeddings",
            "        headers:",
            "          Authorization: \"Bearer ${credential.api_key}\"",
            "        request_body: '{\"input\": ${parameters.input}, \"model\": \"${parameters.model}\"}'",
            "    client_config: {max_connection: 20, read_timeout: 30}",
        ]
    lines += ["", "model_groups:"]
    for i in range(groups):
        lines += [f"  - name: group-{i}", f"    description: Model group {i}", "    lifecycle: {prevent_destroy: false}"]
    lines += ["", "models:"]
    remote = versions_left // 10
    for i in range(remote):
        lines += [
            f"  - name: remote-{i}",
            f"    model_group: group-{i % groups}",
            "    function_name: remote",
            f"    connector: connector-{i % connectors}",
            "    deploy: true",
            "    rate_limiter: {limit: 100, unit: MINUTES}",
        ]
    left = versions_left - remote
    m = 0
    while left > 0:
        n = min(3, left)
        lines += [
            f"  - name: local-{m}",
            f"    model_group: group-{m % groups}",
            "    description: sentence embeddings",
            "    model_format: TORCH_SCRIPT",
            "    model_config:",
            "      model_type: bert",
            "      embedding_dimension: 384",
            "      framework_type: sentence_transformers",
            "      pooling_mode: mean",
            "      all_config: {architectures: [BertModel], hidden_size: 384}",
            "    versions:",
        ]
        for v in range(n):
            lines += [
                f"      - version: \"1.{v}.0\"",
                f"        url: http://127.0.0.1:8089/models/local-{m}-{v}.zip",
                f"        model_content_hash_value: {HASH}",
                f"        deploy: {'true' if v == n - 1 else 'false'}",
            ]
        left -= n
        m += 1
    counts = {"connectors": connectors, "model_groups": groups, "model_versions": versions_left}
    return "\n".join(lines) + "\n", counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", metavar="DIR", help="write the generated file here and keep it")
    parser.add_argument("--json", action="store_true",
                        help="write the same document as JSON (the loader's JSON fast path, as bench_scale.py's file)")
    args = parser.parse_args()

    text, counts = generate(args.resources)
    if args.json:
        import json

        from ruamel.yaml import YAML

        text = json.dumps(YAML(typ="safe").load(text))
    directory = args.keep or tempfile.mkdtemp(prefix="mlsync-bench-")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "bench.json" if args.json else "bench.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    start = time.perf_counter()
    from mlsync.input import load  # noqa: E402  (import time reported separately)
    load_import = time.perf_counter() - start

    times, cpu = [], []
    for _ in range(args.repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        cfg = load([path])
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    versions = sum(1 if m.is_remote else len(m.versions or []) for m in cfg.stack.models)
    assert versions == counts["model_versions"], (versions, counts)

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mlsync.cli", "validate", "-f", path],
                          capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    end_to_end = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        return 1

    try:
        import _ruamel_yaml  # noqa: F401
        parser_kind = "C (ruamel.yaml.clib)"
    except ImportError:
        parser_kind = "pure Python (install ruamel.yaml.clib for the C parser)"
    print(f"file: {path} ({len(text) / 1024:.0f} KiB, {args.resources} resources: {counts['connectors']} connectors, "
          f"{counts['model_groups']} model groups, {counts['model_versions']} model versions)")
    print(f"YAML parser: {parser_kind}")
    print(f"import mlsync.input: {load_import * 1000:.0f} ms")
    print(f"load + validate (best of {args.repeat}): {min(times) * 1000:.0f} ms "
          f"(median {sorted(times)[len(times) // 2] * 1000:.0f} ms; CPU best {min(cpu) * 1000:.0f} ms; "
          f"load average {os.getloadavg()[0]:.1f})")
    print(f"`mlsync validate` end to end (new interpreter): {end_to_end * 1000:.0f} ms")
    print(f"output: {proc.stdout.strip()}")
    if not args.keep:
        os.remove(path)
        os.rmdir(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
