"""Writes a Prometheus config for this machine from config/prometheus.yml (the compose one).

Same jobs, rules and metrics paths; each target `service:port` becomes `127.0.0.1:port` (the local
stack uses the compose ports), or an address given per job; rule files become absolute paths so
the generated file can live anywhere (scripts/stack.sh writes it to .stack/prometheus.yml).

    .venv/bin/python scripts/prometheus_config.py > .stack/prometheus.yml
    .venv/bin/python scripts/prometheus_config.py --target gateway=127.0.0.1:19901 --scrape-interval 1s

The observability tests (deploy/tests/test_observability.py) import `local_config`.
"""

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "config" / "prometheus.yml"


def local_config(
    targets: dict[str, list[str]] | None = None,
    scrape_interval: str | None = None,
    source: Path = SOURCE,
) -> dict:
    """config/prometheus.yml with targets on 127.0.0.1 (or `targets[job]`), absolute rule paths
    and, optionally, another scrape/evaluation interval. A job named in `targets` that the file
    does not have is an error (the caller's idea of the jobs is out of date)."""
    config = yaml.safe_load(source.read_text())
    targets = dict(targets or {})
    unknown = set(targets) - {job["job_name"] for job in config["scrape_configs"]}
    if unknown:
        raise ValueError(f"{source}: no scrape job named {sorted(unknown)}")
    config["rule_files"] = [str((source.parent / f).resolve()) for f in config.get("rule_files", [])]
    if scrape_interval:
        config.setdefault("global", {})
        config["global"]["scrape_interval"] = scrape_interval
        config["global"]["evaluation_interval"] = scrape_interval
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": list(targets[job["job_name"]])}]
            continue
        for static in job.get("static_configs", []):
            static["targets"] = [f"127.0.0.1:{t.rsplit(':', 1)[1]}" for t in static["targets"]]
    return config


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", default=[], metavar="JOB=HOST:PORT")
    parser.add_argument("--scrape-interval", metavar="DURATION")
    args = parser.parse_args(argv)
    targets: dict[str, list[str]] = {}
    for t in args.target:
        job, _, addr = t.partition("=")
        if not addr:
            parser.error(f"--target {t}: expected JOB=HOST:PORT")
        targets.setdefault(job, []).append(addr)
    try:
        config = local_config(targets, args.scrape_interval)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    header = f"# Generated from {SOURCE.relative_to(ROOT)} by scripts/prometheus_config.py: edit that file instead.\n"
    sys.stdout.write(header + yaml.safe_dump(config, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
