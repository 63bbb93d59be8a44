"""deploy/ for replicas: the Kubernetes overlay deploy/kubernetes/replicated and the
compose profile `replicas` have what several replicas sharing PostgreSQL need.

The overlay is rendered with `kubectl kustomize` when kubectl is installed, else by a
small renderer here that implements the subset of kustomize the overlay uses (resources,
strategic-merge patches with merge-by-name lists, `null` and `$patch: delete`, the base's
`labels` and `images`). When kubectl is there, both renderings must agree, so the
fallback cannot drift from what kustomize does. Nothing here is skipped.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from xds_server.bootstrap import XDS_CLUSTER
from xds_server.config import load_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
OVERLAY = K8S / "replicated"
BASE = K8S / "base"
DATA_DIR = "/var/lib/xds-server"
ADMIN_PORT = 18080
XDS_PORT = 18000
ENV_DATABASE_URL = "XDS_SERVER_DATABASE_URL"
ENV_REPLICA_ID = "XDS_SERVER_REPLICA_ID"
ENV_ADVERTISE_URL = "XDS_SERVER_ADVERTISE_URL"
REPLICATED_BOOTSTRAP = DEPLOY / "envoy" / "replicated-ads.yaml"

Doc = dict[str, Any]


# --- a minimal kustomize, for machines without kubectl ------------------------------------


def _key(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def _merge_list(base: list[Any], patch: list[Any]) -> list[Any]:
    """Strategic merge for lists of named objects (containers, env, volumes, ports...):
    items merge by `name`; new ones are prepended, as kustomize does. Other lists are
    replaced."""
    if not (patch and all(isinstance(i, dict) and "name" in i for i in patch)
            and all(isinstance(i, dict) and "name" in i for i in base)):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    index = {item["name"]: i for i, item in enumerate(out)}
    new = []
    for item in patch:
        if item["name"] in index:
            out[index[item["name"]]] = _merge(out[index[item["name"]]], item)
        else:
            new.append(_merge({}, item))
    return new + out


def _merge(base: Doc, patch: Doc) -> Doc:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_list(out[key], value)
        else:
            out[key] = _merge({}, value) if isinstance(value, dict) else copy.deepcopy(value)
    return out


def _render_fallback(directory: Path) -> list[Doc]:
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[Doc] = []
    for res in kust.get("resources", []):
        path = directory / res
        if path.is_dir():
            docs.extend(_render_fallback(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for patch_ref in kust.get("patches", []):
        for patch in yaml.safe_load_all((directory / patch_ref["path"]).read_text()):
            target = next(i for i, d in enumerate(docs) if _key(d) == _key(patch))
            if patch.get("$patch") == "delete":
                del docs[target]
            else:
                docs[target] = _merge(docs[target], patch)
    for group in kust.get("labels", []):
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(group["pairs"])
    for image in kust.get("images", []):
        for doc in docs:
            for pod in (doc.get("spec", {}).get("template", {}).get("spec", {}),):
                for c in pod.get("containers", []):
                    if c["image"] == image["name"]:
                        c["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def _render_kubectl(directory: Path) -> list[Doc] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    run = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> list[Doc]:
    """The overlay as applied: kustomize's rendering if kubectl exists, else the fallback's."""
    return _render_kubectl(OVERLAY) or _render_fallback(OVERLAY)


def _one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def _pod(docs: list[Doc]) -> Doc:
    spec: Doc = _one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def _container(docs: list[Doc]) -> Doc:
    (container,) = _pod(docs)["containers"]
    assert isinstance(container, dict)
    return container


def _pod_labels(docs: list[Doc]) -> dict[str, str]:
    labels: dict[str, str] = _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


def _env(docs: list[Doc]) -> dict[str, Doc]:
    return {e["name"]: e for e in _container(docs)["env"]}


# --- the overlay --------------------------------------------------------------------------


def test_overlay_lists_every_file_and_builds_on_the_base() -> None:
    kust = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert kust["kind"] == "Kustomization"
    assert "../base" in kust["resources"]
    listed = {r for r in kust["resources"] if r != "../base"} | {p["path"] for p in kust["patches"]}
    files = {p.name for p in OVERLAY.iterdir() if p.suffix == ".yaml"} - {"kustomization.yaml"}
    assert listed == files


def test_fallback_rendering_agrees_with_kustomize() -> None:
    """Always renders with the fallback; with kubectl, it must give what kustomize gives."""
    fallback = _render_fallback(OVERLAY)
    assert {_key(d) for d in fallback} >= {("Deployment", "xds-server"), ("PodDisruptionBudget", "xds-server")}
    for directory in (BASE, OVERLAY):
        real = _render_kubectl(directory)
        if real is not None:
            mine = {_key(d): d for d in _render_fallback(directory)}
            assert {_key(d) for d in real} == set(mine), directory
            for doc in real:
                assert doc == mine[_key(doc)], (directory, _key(doc))


def test_three_replicas_roll_one_at_a_time_within_the_disruption_budget(rendered: list[Doc]) -> None:
    deployment = _one(rendered, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["type"] == "RollingUpdate"
    pdb = _one(rendered, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 2
    assert pdb["spec"]["selector"]["matchLabels"].items() <= _pod_labels(rendered).items()
    # A rollout never goes below what the budget promises.
    assert spec["replicas"] - spec["strategy"]["rollingUpdate"]["maxUnavailable"] >= pdb["spec"]["minAvailable"]


def test_replicas_prefer_different_nodes(rendered: list[Doc]) -> None:
    anti = _pod(rendered)["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti  # a small cluster still schedules
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"].items() <= _pod_labels(rendered).items()


def test_database_url_comes_from_a_secret_never_from_the_manifests(rendered: list[Doc]) -> None:
    ref = _env(rendered)[ENV_DATABASE_URL]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "xds-server-database", "key": "url"}
    assert not ref.get("optional")  # no database, no start: never a silent SQLite fallback
    # The Secret is created by the operator (documented in kustomization.yaml), not shipped.
    assert not [d for d in rendered if d["kind"] == "Secret" and d["metadata"]["name"] == ref["name"]]
    assert f"create secret generic {ref['name']}" in (OVERLAY / "kustomization.yaml").read_text()
    assert "postgresql://" not in yaml.safe_dump_all(rendered)


def _resolve(env: dict[str, Doc], name: str) -> str:
    """An env value with $(VAR) references to earlier downward-API vars spelled out."""
    value: str = env[name]["value"]
    names = list(env)
    for other, entry in env.items():
        ref = f"$({other})"
        if ref in value:
            assert names.index(other) < names.index(name), f"{other} must precede {name}"
            value = value.replace(ref, "{" + entry["valueFrom"]["fieldRef"]["fieldPath"] + "}")
    return value


def test_replica_identity_and_advertise_url_come_from_the_pod(rendered: list[Doc]) -> None:
    env = _env(rendered)
    assert _resolve(env, ENV_REPLICA_ID) == "{metadata.name}"
    admin = {p["name"]: p["containerPort"] for p in _container(rendered)["ports"]}["http-admin"]
    assert _resolve(env, ENV_ADVERTISE_URL) == f"http://{{status.podIP}}:{admin}"


def test_the_environment_overrides_the_config_file(rendered: list[Doc], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the manifests set are the ones the server reads."""
    path = tmp_path / "config.yaml"
    path.write_text(_one(rendered, "ConfigMap")["data"]["config.yaml"])
    monkeypatch.setenv(ENV_DATABASE_URL, "postgresql://xds:pw@postgres.db.svc:5432/xds")
    monkeypatch.setenv(ENV_REPLICA_ID, "xds-server-7d9f-abcde")
    monkeypatch.setenv(ENV_ADVERTISE_URL, "http://10.0.0.7:18080")
    server = load_config(path).server
    assert server.database_url == "postgresql://xds:pw@postgres.db.svc:5432/xds"
    assert server.replica_id == "xds-server-7d9f-abcde"
    assert server.advertise_url == "http://10.0.0.7:18080"


def test_each_replica_keeps_its_module_store_on_a_pod_volume(rendered: list[Doc]) -> None:
    assert not [d for d in rendered if d["kind"] == "PersistentVolumeClaim"]
    volumes = {v["name"]: v for v in _pod(rendered)["volumes"]}
    mounts = {m["mountPath"]: m for m in _container(rendered)["volumeMounts"]}
    data = volumes[mounts[DATA_DIR]["name"]]
    assert "persistentVolumeClaim" not in data
    assert "emptyDir" in data or "ephemeral" in data
    assert not mounts[DATA_DIR].get("readOnly")


def test_the_base_hardening_is_kept(rendered: list[Doc]) -> None:
    pod = _pod(rendered)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    sc = _container(rendered)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert _container(rendered)["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert _container(rendered)["image"] == "xds-server:0.1.0"


def _admits(policy: Doc, port: int, labels: dict[str, str]) -> bool:
    for rule in policy["spec"].get("ingress", []):
        if port not in [p["port"] for p in rule.get("ports", [])]:
            continue
        for peer in rule.get("from", []):
            if "namespaceSelector" in peer or "ipBlock" in peer:
                continue
            if peer["podSelector"].get("matchLabels", {}).items() <= labels.items():
                return True
    return False


def test_replicas_reach_each_others_admin_port(rendered: list[Doc]) -> None:
    labels = _pod_labels(rendered)
    peers = _one(rendered, "NetworkPolicy", "xds-server-peers")
    assert peers["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    # Admits the server pods themselves, specifically (not only "any pod").
    rule = next(r for r in peers["spec"]["ingress"] if [p["port"] for p in r["ports"]] == [ADMIN_PORT])
    assert [p["podSelector"]["matchLabels"] for p in rule["from"]] == [
        {k: v for k, v in labels.items() if k.startswith("app.kubernetes.io/")}]
    assert _admits(peers, ADMIN_PORT, labels)
    assert not _admits(peers, XDS_PORT, labels)
    # The base policy (Envoys to 18000) is still there.
    assert _admits(_one(rendered, "NetworkPolicy", "xds-server"), XDS_PORT, {"xds-server.io/client": "envoy"})


def test_envoys_can_see_every_replica_through_a_headless_service(rendered: list[Doc]) -> None:
    headless = _one(rendered, "Service", "xds-server-replicas")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= _pod_labels(rendered).items()
    (port,) = headless["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["appProtocol"]) == (XDS_PORT, "grpc-xds", "grpc")
    assert _one(rendered, "Service", "xds-server")["spec"].get("clusterIP") != "None"


# --- compose, profile `replicas` ----------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Doc:
    doc: Doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


REPLICAS = ("xds-server-1", "xds-server-2")


def test_default_services_stay_outside_the_profile(compose: Doc) -> None:
    services = compose["services"]
    for name in ("registry", "seed", "xds-server", "envoy"):
        assert "profiles" not in services[name], name
    for name in ("postgres", *REPLICAS, "envoy-replicated"):
        assert services[name]["profiles"] == ["replicas"], name


def test_postgres_is_healthchecked_and_not_published(compose: Doc) -> None:
    pg = compose["services"]["postgres"]
    assert pg["image"] == "postgres:15"
    assert "pg_isready" in pg["healthcheck"]["test"]
    assert "ports" not in pg
    assert any(v.split(":")[0] in compose["volumes"] for v in pg["volumes"])


def test_replicas_share_the_database_and_keep_their_own_store(compose: Doc) -> None:
    services = compose["services"]
    pg = services["postgres"]["environment"]
    expected_url = f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
    stores = set()
    for name in REPLICAS:
        svc = services[name]
        env = svc["environment"]
        assert env[ENV_DATABASE_URL] == expected_url
        assert env[ENV_REPLICA_ID] == name
        assert env[ENV_ADVERTISE_URL] == f"http://{name}:{ADMIN_PORT}"  # the compose service name
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc["depends_on"]["seed"]["condition"] == "service_completed_successfully"
        assert svc["image"] == services["xds-server"]["image"]
        assert svc["healthcheck"] == services["xds-server"]["healthcheck"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        assert mounts["/etc/xds-server/config.yaml"] == "./config.yaml"
        assert mounts[DATA_DIR] in compose["volumes"]
        stores.add(mounts[DATA_DIR])
    assert len(stores) == len(REPLICAS)  # one module store per replica
    assert services["xds-server"]["volumes"][-1].split(":")[0] not in stores


def test_published_ports_are_loopback_and_unique(compose: Doc) -> None:
    published = []
    for svc in compose["services"].values():
        for p in svc.get("ports", []):
            host, port, _ = str(p).split(":")
            assert host == "127.0.0.1", p
            published.append(port)
    assert len(published) == len(set(published)), published  # the profile runs next to the default stack


def test_replicated_envoy_lists_every_replica(compose: Doc) -> None:
    envoy = compose["services"]["envoy-replicated"]
    assert envoy["image"] == compose["services"]["envoy"]["image"]
    (mount,) = envoy["volumes"]
    host_path, container_path = mount.split(":")[:2]
    assert (DEPLOY / host_path).resolve() == REPLICATED_BOOTSTRAP
    assert container_path in envoy["command"]
    for name in REPLICAS:
        assert envoy["depends_on"][name]["condition"] == "service_healthy"
    boot = yaml.safe_load(REPLICATED_BOOTSTRAP.read_text())
    assert REPLICATED_BOOTSTRAP.read_text().startswith("# Generated by: xds-server bootstrap ")
    (cluster,) = [c for c in boot["static_resources"]["clusters"] if c["name"] == XDS_CLUSTER]
    endpoints = [
        f"{lb['endpoint']['address']['socket_address']['address']}:"
        f"{lb['endpoint']['address']['socket_address']['port_value']}"
        for group in cluster["load_assignment"]["endpoints"] for lb in group["lb_endpoints"]]
    assert endpoints == [f"{name}:{XDS_PORT}" for name in REPLICAS]
    assert cluster["type"] == "STRICT_DNS"
    assert cluster["health_checks"][0]["grpc_health_check"] == {}  # a dead replica is left at once
    ads = boot["dynamic_resources"]["ads_config"]
    assert ads["grpc_services"][0]["envoy_grpc"]["cluster_name"] == XDS_CLUSTER
    # The config the replicas load delivers inline, so Envoy needs no module cluster.
    cfg = load_config(DEPLOY / "config.yaml")
    assert {f.delivery for f in cfg.filters} == {"inline"}
    assert [c["name"] for c in boot["static_resources"]["clusters"]] == [XDS_CLUSTER]
