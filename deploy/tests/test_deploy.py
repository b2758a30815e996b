"""The deployment files agree with the code.

Ports, probe paths, config file names and file paths in deploy/ (Dockerfiles, compose, Kubernetes)
are checked against what the services actually use: their default listen addresses as read from
the code and shipped config, the routes their servers register, the files in the repository. The
gateway configs are checked with the real `gateway validate`.

Run:  .venv/bin/python -m pytest deploy/tests
Needs the gateway binary (GATEWAY_BIN, default target/debug/gateway): cargo build --workspace --bins
"""

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKER = DEPLOY / "docker"
K8S = DEPLOY / "k8s"

# The observability files compose mounts, and what each must be.
OBSERVABILITY_PATHS = {
    "config/prometheus.yml": "file",
    "config/alerts.yml": "file",
    "grafana/provisioning": "dir",
    "grafana/dashboards": "dir",
}

RUST_SERVICES = ["gateway", "auth-service", "notifications", "payments"]
ALL_IMAGES = RUST_SERVICES + ["monolith"]


# --- what the code says --------------------------------------------------------------------


def port_of(addr: str) -> int:
    match = re.fullmatch(r"(?:\[[0-9a-fA-F:]+\]|[^:]+):(\d+)", addr.strip())
    assert match, f"not a host:port address: {addr!r}"
    return int(match.group(1))


def rust_default_listen(crate_dir: str) -> int:
    """The `DEFAULT_LISTEN` of the service's `ServiceSpec` (service-kit's shell)."""
    source = (ROOT / crate_dir / "src/lib.rs").read_text()
    match = re.search(r'const DEFAULT_LISTEN: &\'static str = "([^"]+)";', source)
    assert match, f"{crate_dir}/src/lib.rs: no `const DEFAULT_LISTEN`"
    return port_of(match.group(1))


def monolith_default_bind() -> int:
    source = (ROOT / "backends/monolith/gunicorn.conf.py").read_text()
    match = re.search(r'os\.environ\.get\("MONOLITH_BIND", "([^"]+)"\)', source)
    assert match, "backends/monolith/gunicorn.conf.py: no MONOLITH_BIND default"
    return port_of(match.group(1))


def load_yaml(path: Path):
    with path.open() as f:
        return yaml.safe_load(f)


def top_level_scalar(path: Path, key: str) -> str:
    """A top-level `key: value` of a YAML file, read by line: config/auth-service.yaml is YAML 1.2
    (`[::1/128]` in a flow sequence), which PyYAML (YAML 1.1) cannot parse."""
    match = re.search(rf"^{re.escape(key)}:\s*([^\s#]+)", path.read_text(), re.M)
    assert match, f"{path.relative_to(ROOT)}: no top-level `{key}:`"
    return match.group(1)


GATEWAY_COMPOSE_CONFIG = load_yaml(DEPLOY / "gateway.compose.yaml")
SHIPPED_GATEWAY_CONFIG = load_yaml(ROOT / "config/gateway.yaml")

EXPECTED_PORTS = {
    "gateway": {
        port_of(SHIPPED_GATEWAY_CONFIG["listen"]),
        port_of(SHIPPED_GATEWAY_CONFIG["admin"]["listen"]),
    },
    "auth-service": {port_of(top_level_scalar(ROOT / "config/auth-service.yaml", "listen"))},
    "notifications": {rust_default_listen("backends/notifications")},
    "payments": {rust_default_listen("backends/payments")},
    "monolith": {monolith_default_bind()},
}
# The one port each backend serves its API (and /healthz) on.
API_PORT = {name: min(ports) for name, ports in EXPECTED_PORTS.items()}
GATEWAY_ADMIN_PORT = port_of(SHIPPED_GATEWAY_CONFIG["admin"]["listen"])
# The environment variable each service takes its listen address from.
LISTEN_ENV = {
    "auth-service": "AUTH_LISTEN",
    "notifications": "NOTIFICATIONS_LISTEN",
    "payments": "PAYMENTS_LISTEN",
    "monolith": "MONOLITH_BIND",
}


def served_paths(service: str) -> set[str]:
    """Paths the service's HTTP server registers, read from its source."""
    sources = {
        "gateway": ["gateway/src/admin.rs"],
        "auth-service": ["auth-service/src/http.rs"],
        # The extracted services' own routes, plus /healthz and /metrics from their shell.
        "notifications": ["backends/notifications/src/lib.rs", "service-kit/src/shell.rs"],
        "payments": ["backends/payments/src/lib.rs", "service-kit/src/shell.rs"],
        "monolith": ["backends/monolith/monolith/urls.py"],
    }[service]
    text = "\n".join((ROOT / s).read_text() for s in sources)
    found = set(re.findall(r'"(/[a-z]+)"', text))  # Rust: "/healthz"
    found |= {f"/{p}" for p in re.findall(r'path\("([a-z]+)"', text)}  # Django: path("healthz", ...)
    return found


# --- Dockerfiles -----------------------------------------------------------------------------


def dockerfile(name: str) -> str:
    path = DOCKER / f"{name}.Dockerfile"
    assert path.is_file(), f"missing {path.relative_to(ROOT)}"
    return path.read_text()


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_dockerfile_exposes_the_services_ports(name):
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", dockerfile(name), re.M) for p in line.split()}
    assert exposed == EXPECTED_PORTS[name]


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_dockerfile_listen_env_and_healthcheck_match(name):
    text = dockerfile(name)
    env = LISTEN_ENV.get(name)
    if env:
        match = re.search(rf"\b{env}=(\S+)", text)
        assert match, f"{name}.Dockerfile does not set {env}"
        assert match.group(1).startswith("0.0.0.0:"), f"{env} must listen on all interfaces in a container"
        assert port_of(match.group(1)) == API_PORT[name]
    health = re.search(r"HEALTHCHECK.*?http://127\.0\.0\.1:(\d+)(/[a-z]+)", text, re.S)
    assert health, f"{name}.Dockerfile has no HTTP HEALTHCHECK"
    port = int(health.group(1))
    assert port == (GATEWAY_ADMIN_PORT if name == "gateway" else API_PORT[name])
    assert health.group(2) in served_paths(name)


@pytest.mark.parametrize("name", RUST_SERVICES)
def test_rust_dockerfiles_build_a_real_workspace_binary_and_run_as_non_root(name):
    text = dockerfile(name)
    assert re.search(rf"cargo build --release --locked -p {name} --bin {name}\b", text)
    members = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    crate_dir = next(m for m in members if Path(m).name == name or m == name)
    manifest = tomllib.loads((ROOT / crate_dir / "Cargo.toml").read_text())
    assert manifest["package"]["name"] == name
    assert name in [b["name"] for b in manifest.get("bin", [])], f"{crate_dir}: no [[bin]] {name}"
    assert "FROM debian:12-slim" in text
    assert re.search(r"^USER 10001", text, re.M)
    assert (DOCKER / f"{name}.Dockerfile.dockerignore").is_file()


def test_monolith_dockerfile_copies_existing_files_and_its_requirements_are_the_venvs():
    text = dockerfile("monolith")
    for source in re.findall(r"^COPY (?!--from)(\S+) ", text, re.M):
        assert (ROOT / source).exists(), f"monolith.Dockerfile copies missing {source}"
    assert re.search(r'CMD \["gunicorn", "-c", "/app/gunicorn\.conf\.py"\]', text)

    def names(path):
        lines = (ROOT / path).read_text().splitlines()
        return {
            re.split(r"[\[<>=!~ ]", line.strip(), maxsplit=1)[0].lower()
            for line in lines
            if line.strip() and not line.startswith("#")
        }

    assert names("backends/monolith/requirements.txt") <= names("scripts/python-requirements.txt")


# --- compose ---------------------------------------------------------------------------------

COMPOSE = load_yaml(DEPLOY / "compose.yaml")
SERVICES = COMPOSE["services"]


def env_of(service: str) -> dict:
    env = SERVICES[service].get("environment") or {}
    return {k: str(v) for k, v in env.items()}


def container_ports(service: str) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in SERVICES[service].get("ports", [])}


def host_path(volume: str) -> str | None:
    """`../config/x.yaml:/etc/x.yaml:ro` → `config/x.yaml` (repository-relative); None for
    named volumes."""
    source = volume.split(":")[0]
    if not source.startswith("."):
        return None
    return os.path.relpath((DEPLOY / source).resolve(), ROOT)


def mounts(service: str) -> dict[str, str]:
    """container path → repository path, for bind mounts."""
    out = {}
    for volume in SERVICES[service].get("volumes", []):
        source = host_path(volume)
        if source is not None:
            out[volume.split(":")[1]] = source
    return out


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_compose_builds_each_service_from_its_dockerfile_at_the_repo_root(name):
    build = SERVICES[name]["build"]
    assert (DEPLOY / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == (DOCKER / f"{name}.Dockerfile").resolve()


@pytest.mark.parametrize("name", ALL_IMAGES)
def test_compose_publishes_and_listens_on_the_services_ports(name):
    assert container_ports(name) == EXPECTED_PORTS[name]
    if name in LISTEN_ENV:
        addr = env_of(name)[LISTEN_ENV[name]]
        assert addr.startswith("0.0.0.0:") and port_of(addr) == API_PORT[name]


def test_every_bind_mounted_path_exists():
    for name in SERVICES:
        for container_path, source in mounts(name).items():
            assert (ROOT / source).exists(), f"compose {name}: {source} (mounted at {container_path}) is missing"
            kind = OBSERVABILITY_PATHS.get(source)
            if kind:
                assert (ROOT / source).is_dir() == (kind == "dir"), f"{source} should be a {kind}"
    referenced = {source for name in SERVICES for source in mounts(name).values()}
    assert set(OBSERVABILITY_PATHS) <= referenced, "prometheus config, rules and grafana dirs must be mounted"


def test_grafana_and_prometheus_mounts_use_the_documented_paths():
    assert mounts("grafana") == {
        "/etc/grafana/provisioning": "grafana/provisioning",
        "/var/lib/grafana/dashboards": "grafana/dashboards",
    }
    assert mounts("prometheus") == {
        "/etc/prometheus/prometheus.yml": "config/prometheus.yml",
        "/etc/prometheus/alerts.yml": "config/alerts.yml",
    }
    assert "--config.file=/etc/prometheus/prometheus.yml" in SERVICES["prometheus"]["command"]
    assert {"4317", "4318"} <= {str(p).split(":")[-1] for p in SERVICES["jaeger"]["ports"]}
    assert env_of("jaeger")["COLLECTOR_OTLP_ENABLED"] == "true"


PROMETHEUS_CONFIG = load_yaml(ROOT / "config/prometheus.yml")


def test_prometheus_rule_files_resolve_to_mounted_files_in_the_container():
    """rule_files are relative to the config file: in the container they must land on a mount
    of the same repository file they name here."""
    container_dir = "/etc/prometheus"
    prometheus_mounts = mounts("prometheus")
    assert PROMETHEUS_CONFIG["rule_files"], "config/prometheus.yml loads no alert rules"
    for rule_file in PROMETHEUS_CONFIG["rule_files"]:
        assert not rule_file.startswith("/"), f"{rule_file}: keep rule files relative to the config"
        in_container = os.path.normpath(f"{container_dir}/{rule_file}")
        assert in_container in prometheus_mounts, f"rule file {rule_file} is not mounted at {in_container}"
        assert prometheus_mounts[in_container] == os.path.relpath((ROOT / "config" / rule_file).resolve(), ROOT)


def test_prometheus_scrapes_every_service_on_its_metrics_port():
    jobs = {job["job_name"]: job for job in PROMETHEUS_CONFIG["scrape_configs"]}
    assert set(jobs) == set(RUST_SERVICES), "one scrape job per service that serves /metrics"
    for name, job in jobs.items():
        path = job.get("metrics_path", "/metrics")
        assert path in served_paths(name), f"{name} does not serve {path}"
        targets = [t for static in job["static_configs"] for t in static["targets"]]
        want_port = GATEWAY_ADMIN_PORT if name == "gateway" else API_PORT[name]
        assert targets == [f"{name}:{want_port}"], f"job {name}: {targets}"
    assert "/metrics" not in served_paths("monolith"), "the monolith serves /metrics now: scrape it"


def grafana_provisioning(kind: str) -> dict:
    files = sorted((ROOT / "grafana/provisioning" / kind).glob("*.y*ml"))
    assert len(files) == 1, f"grafana/provisioning/{kind}: expected one file, found {files}"
    return load_yaml(files[0])


def test_grafana_provisioning_agrees_with_compose_and_prometheus():
    (datasource,) = grafana_provisioning("datasources")["datasources"]
    assert datasource["type"] == "prometheus" and datasource["uid"] == "prometheus"
    assert datasource["url"] == f"http://prometheus:{min(container_ports('prometheus'))}"
    assert datasource["jsonData"]["timeInterval"] == PROMETHEUS_CONFIG["global"]["scrape_interval"]
    (provider,) = grafana_provisioning("dashboards")["providers"]
    assert provider["type"] == "file"
    # The provider reads the directory compose mounts grafana/dashboards at.
    assert mounts("grafana")[provider["options"]["path"]] == "grafana/dashboards"
    assert list((ROOT / "grafana/dashboards").glob("*.json")), "no dashboards to provision"


def test_compose_gateway_runs_the_mounted_routes_file():
    command = SERVICES["gateway"]["command"]
    assert command[:2] == ["run", "--config"]
    assert mounts("gateway")[command[2]] == "deploy/gateway.compose.yaml"
    assert port_of(GATEWAY_COMPOSE_CONFIG["listen"]) in EXPECTED_PORTS["gateway"]
    assert GATEWAY_COMPOSE_CONFIG["listen"].startswith("0.0.0.0:")
    assert GATEWAY_COMPOSE_CONFIG["admin"]["listen"] == f"0.0.0.0:{GATEWAY_ADMIN_PORT}"


def test_compose_gateway_upstreams_are_compose_services_on_their_ports():
    for upstream, spec in GATEWAY_COMPOSE_CONFIG["upstreams"].items():
        for target in spec["targets"]:
            host = target.rsplit(":", 1)[0]
            assert host in SERVICES, f"upstreams.{upstream}: {host} is not a compose service"
            assert port_of(target) == API_PORT[host], f"upstreams.{upstream}: {target}"
    # Same routes, by name, as the shipped local config.
    assert [r["name"] for r in GATEWAY_COMPOSE_CONFIG["routes"]] == [r["name"] for r in SHIPPED_GATEWAY_CONFIG["routes"]]


def test_compose_auth_settings_agree_across_services():
    issuer = env_of("auth-service")["AUTH_ISSUER"]
    auth = GATEWAY_COMPOSE_CONFIG["auth"]
    assert auth["issuer"] == issuer == env_of("monolith")["JWT_ISSUER"]
    assert auth["jwks_url"] == env_of("monolith")["JWK_URL"] == f"{issuer}/.well-known/jwks.json"
    assert port_of(issuer.removeprefix("http://")) == API_PORT["auth-service"]
    assert env_of("auth-service")["AUTH_DATABASE_URL"].startswith("postgres://")
    assert "postgres" in SERVICES
    config_path = env_of("auth-service")["AUTH_CONFIG"]
    assert mounts("auth-service")[config_path] == "config/auth-service.yaml"


def test_compose_trust_and_service_to_service_urls():
    gateway_ip = SERVICES["gateway"]["networks"]["edge"]["ipv4_address"]
    monolith_ip = SERVICES["monolith"]["networks"]["edge"]["ipv4_address"]
    for name in ("monolith", "notifications", "payments"):
        assert f"{gateway_ip}/32" in env_of(name)["TRUSTED_GATEWAYS"].split(","), name
    # The monolith's order_placed call identifies itself to notifications: it must be trusted there.
    assert f"{monolith_ip}/32" in env_of("notifications")["TRUSTED_GATEWAYS"].split(",")
    assert env_of("monolith")["NOTIFICATIONS_URL"] == f"http://notifications:{API_PORT['notifications']}"


def test_compose_services_export_traces_to_jaeger():
    jaeger_grpc = "http://jaeger:4317"
    assert GATEWAY_COMPOSE_CONFIG["observability"]["otlp"]["endpoint"] == jaeger_grpc
    assert GATEWAY_COMPOSE_CONFIG["observability"]["otlp"]["protocol"] == "grpc"
    for name in ("auth-service", "notifications", "payments"):
        assert env_of(name)["OTEL_EXPORTER_OTLP_ENDPOINT"] == jaeger_grpc, name
        assert env_of(name)["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc", name
    assert "4317" in {str(p).split(":")[-1] for p in SERVICES["jaeger"]["ports"]}


# --- Kubernetes ------------------------------------------------------------------------------


def k8s_objects() -> list[dict]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def k8s(kind: str, name: str) -> dict:
    found = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name} in deploy/k8s"
    return found[0]


def container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def port_number(c: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in c["ports"] if p["name"] == port)


def test_kustomization_lists_every_manifest():
    listed = load_yaml(K8S / "kustomization.yaml")["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_k8s_gateway_deployment():
    deployment = k8s("Deployment", "gateway")
    assert deployment["spec"]["replicas"] == 2
    c = container(deployment)
    assert c["args"] == ["run", "--config", "/etc/gateway/gateway.yaml"]
    assert {p["containerPort"] for p in c["ports"]} == EXPECTED_PORTS["gateway"]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path and path in served_paths("gateway")
        assert port_number(c, get["port"]) == GATEWAY_ADMIN_PORT
    # Mounted as a directory (no subPath), so ConfigMap updates reach the file watch.
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/gateway")
    assert "subPath" not in mount
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    configmap = k8s("ConfigMap", volume["configMap"]["name"])
    assert "gateway.yaml" in configmap["data"]
    routes = yaml.safe_load(configmap["data"]["gateway.yaml"])
    assert routes["admin"]["listen"] == f"0.0.0.0:{GATEWAY_ADMIN_PORT}"
    assert port_of(routes["listen"]) in EXPECTED_PORTS["gateway"]
    service = k8s("Service", "gateway")
    assert {p["port"] for p in service["spec"]["ports"]} == EXPECTED_PORTS["gateway"]


def test_k8s_auth_service_deployment_uses_postgres_from_a_secret():
    deployment = k8s("Deployment", "auth-service")
    c = container(deployment)
    assert c["args"] == ["serve"]
    env = {e["name"]: e for e in c["env"]}
    assert port_of(env["AUTH_LISTEN"]["value"]) == API_PORT["auth-service"]
    ref = env["AUTH_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    secret = k8s("Secret", ref["name"])
    assert secret["stringData"][ref["key"]].startswith("postgres://")
    for probe in ("livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz" and "/healthz" in served_paths("auth-service")
        assert port_number(c, get["port"]) == API_PORT["auth-service"]
    assert {p["port"] for p in k8s("Service", "auth-service")["spec"]["ports"]} == {API_PORT["auth-service"]}
    # The gateway trusts tokens from this issuer.
    routes = yaml.safe_load(k8s("ConfigMap", "gateway-config")["data"]["gateway.yaml"])
    assert routes["auth"]["issuer"] == env["AUTH_ISSUER"]["value"]


def test_k8s_redis_is_reachable_by_name():
    c = container(k8s("Deployment", "redis"))
    assert {p["containerPort"] for p in c["ports"]} == {6379}
    assert {p["port"] for p in k8s("Service", "redis")["spec"]["ports"]} == {6379}


def test_replicated_gateways_share_rate_limits_through_the_deployed_redis():
    k8s_routes = yaml.safe_load(k8s("ConfigMap", "gateway-config")["data"]["gateway.yaml"])
    for routes, redis_port in (
        (k8s_routes, {p["port"] for p in k8s("Service", "redis")["spec"]["ports"]}),
        (GATEWAY_COMPOSE_CONFIG, {6379}),
    ):
        limits = routes["rate_limits"]
        assert limits["store"] == "redis"
        host, port = limits["redis_url"].removeprefix("redis://").split("/")[0].split(":")
        assert host == "redis" and int(port) in redis_port
    assert "redis" in COMPOSE["services"]


def test_k8s_images_and_probes_are_set_for_every_container():
    for obj in k8s_objects():
        if obj["kind"] != "Deployment":
            continue
        c = container(obj)
        assert c.get("image"), obj["metadata"]["name"]
        assert "livenessProbe" in c and "readinessProbe" in c, obj["metadata"]["name"]


# --- the gateway itself validates the configs --------------------------------------------------


def gateway_bin() -> Path:
    path = Path(os.environ.get("GATEWAY_BIN", ROOT / "target/debug/gateway"))
    if not path.is_file():
        pytest.fail(f"{path} not found: run `cargo build --workspace --bins` first (or set GATEWAY_BIN)")
    return path


def validate(path: Path) -> None:
    # --offline: these files name the compose / cluster services (monolith:8000, ...), which
    # resolve inside that network only; everything else is checked as `run` would.
    result = subprocess.run(
        [str(gateway_bin()), "validate", "--offline", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"gateway validate {path}:\n{result.stdout}{result.stderr}"


def test_gateway_validates_the_compose_routes():
    validate(DEPLOY / "gateway.compose.yaml")


def test_gateway_validates_the_k8s_configmap_routes(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(k8s("ConfigMap", "gateway-config")["data"]["gateway.yaml"])
    validate(path)
