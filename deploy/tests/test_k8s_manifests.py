"""deploy/k8s: both overlays rendered by a real Kustomize (`kubectl kustomize`), the core resources
checked against Kubernetes' schemas (kubernetes-validate, strict) and the rules the API server adds
to them, the Strimzi and CloudNativePG resources against their CRD schemas (the validator vendored in
deploy/k8s/crd-schemas). A manifest a cluster would refuse fails here: the broken ones below prove
it. And what the manifests must agree on with the code: the topics, each service's Kafka ACLs (from
its definition: what it writes, what it consumes), the settings the ConfigMap names."""

from __future__ import annotations

import ast
import copy
import importlib.util
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml

from caseloop_deploy.services import SERVICE_NAMES, service_spec
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.service import ServiceSettings
from caseloop_events.runtime.topics import all_topics, deadletter_topic

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CRD_SCHEMAS = K8S / "crd-schemas"
KUBECTL = Path(sys.executable).parent / "kubectl"
KUBERNETES_VERSION = "1.37.0"
OVERLAYS = ("dev", "prod")
#: API groups whose resources the vendored CRD schemas answer for.
CUSTOM_GROUPS = ("kafka.strimzi.io", "postgresql.cnpg.io")

Manifest = dict[str, Any]


def render(overlay: str) -> list[Manifest]:
    rendered = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def crd_validator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("validate_crs", CRD_SCHEMAS / "validate_crs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VALIDATE_CRS = crd_validator()
CUSTOM_RESOURCE_VALIDATORS = {
    key: VALIDATE_CRS.CRValidator(schema, format_checker=VALIDATE_CRS.formats)
    for key, (_, schema) in VALIDATE_CRS.load_schemas(str(CRD_SCHEMAS)).items()
}


def is_custom(doc: Manifest) -> bool:
    return str(doc["apiVersion"]).partition("/")[0] in CUSTOM_GROUPS


def pod_spec(doc: Manifest) -> dict[str, Any] | None:
    if doc["kind"] in ("Deployment", "Job"):
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    return None


def api_server_refusals(doc: Manifest) -> Iterator[str]:
    """What the API server refuses beyond the OpenAPI schema, for the kinds caseloop ships."""
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    spec = pod_spec(doc)
    if spec is None:
        return
    volumes = {volume["name"] for volume in spec.get("volumes", [])}
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        if not container.get("image"):
            yield f"{where}: container {container['name']}: image: Required value"
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in volumes:
                yield f"{where}: container {container['name']}: volumeMount {mount['name']}: Not found"
    if doc["kind"] == "Deployment":
        labels = doc["spec"]["template"]["metadata"].get("labels", {})
        selected = doc["spec"]["selector"]["matchLabels"]
        if any(labels.get(key) != value for key, value in selected.items()):
            yield f"{where}: selector does not match template labels"
    if doc["kind"] == "Job" and spec.get("restartPolicy") not in ("Never", "OnFailure"):
        yield f"{where}: restartPolicy must be Never or OnFailure"


def refusals(docs: list[Manifest]) -> list[str]:
    """Why a cluster would refuse any of the documents (empty: it would take them all)."""
    found: list[str] = []
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if is_custom(doc):
            validator = CUSTOM_RESOURCE_VALIDATORS.get((doc["apiVersion"], doc["kind"]))
            if validator is None:
                found.append(f"{where}: no schema for {doc['apiVersion']}")
                continue
            found += [f"{where}: {VALIDATE_CRS.describe(error)}" for error in validator.iter_errors(doc)]
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            found.append(f"{where}: {error.message}")
        found += api_server_refusals(doc)
    return found


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    return request.param, render(request.param)


@pytest.fixture(scope="module")
def prod() -> list[Manifest]:
    return render("prod")


def of_kind(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def config_of(docs: list[Manifest]) -> dict[str, str]:
    (config_map,) = of_kind(docs, "ConfigMap").values()
    data: dict[str, str] = config_map["data"]
    return data


# ------------------------------------------------------------------------------ a cluster takes them


def test_a_cluster_would_take_every_resource_of_each_overlay(overlay: tuple[str, list[Manifest]]) -> None:
    _, docs = overlay

    assert refusals(docs) == []


def test_the_vendored_validator_passes_the_custom_resources_of_both_overlays(tmp_path: Path) -> None:
    """The validator as a command, as the operators' README runs it, on the rendered overlays."""
    for name in OVERLAYS:
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(render(name)))

    checked = subprocess.run(
        [sys.executable, str(CRD_SCHEMAS / "validate_crs.py"), "-q", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 failure(s)" in checked.stderr


def _first(docs: list[Manifest], kind: str) -> Manifest:
    return next(doc for doc in docs if doc["kind"] == kind)


def _misspell_a_topic_field(docs: list[Manifest]) -> None:
    topic = _first(docs, "KafkaTopic")
    topic["spec"]["partitionCount"] = topic["spec"].pop("partitions")


def _drop_the_image(docs: list[Manifest]) -> None:
    del _first(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]


def _misspell_a_deployment_field(docs: list[Manifest]) -> None:
    deployment = _first(docs, "Deployment")
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")


def _misspell_an_acl_operation(docs: list[Manifest]) -> None:
    _first(docs, "KafkaUser")["spec"]["authorization"]["acls"][0]["operations"] = ["Wirte"]


def _mount_a_missing_volume(docs: list[Manifest]) -> None:
    container = _first(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container["volumeMounts"].append({"name": "nowhere", "mountPath": "/nowhere"})


def _give_the_database_cluster_a_string_for_instances(docs: list[Manifest]) -> None:
    _first(docs, "Cluster")["spec"]["instances"] = "three"


@pytest.mark.parametrize(
    ("break_it", "said"),
    [
        (_misspell_a_topic_field, "'partitionCount' was unexpected"),
        (_drop_the_image, "image: Required value"),
        (_misspell_a_deployment_field, "'replica' was unexpected"),
        (_misspell_an_acl_operation, "'Wirte' is not one of"),
        (_mount_a_missing_volume, "volumeMount nowhere: Not found"),
        (_give_the_database_cluster_a_string_for_instances, "'three' is not of type 'integer'"),
    ],
)
def test_a_manifest_a_cluster_would_refuse_fails(
    prod: list[Manifest], break_it: Callable[[list[Manifest]], None], said: str
) -> None:
    docs = copy.deepcopy(prod)
    break_it(docs)

    found = refusals(docs)

    assert len(found) == 1, found
    assert said in found[0]


def test_no_secret_value_is_committed_only_referenced(overlay: tuple[str, list[Manifest]]) -> None:
    _, docs = overlay

    assert of_kind(docs, "Secret") == {}
    for name in SERVICE_NAMES:
        (container,) = of_kind(docs, "Deployment")[name]["spec"]["template"]["spec"]["containers"]
        references = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
        assert references == {f"caseloop-db-{name}"}


# -------------------------------------------------------------------------------- the services


def test_every_service_runs_hardened_with_both_probes_and_room_to_write_tmp(
    overlay: tuple[str, list[Manifest]],
) -> None:
    _, docs = overlay
    deployments = of_kind(docs, "Deployment")

    assert set(deployments) == set(SERVICE_NAMES)
    for name, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["args"] == ["serve", name]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]["memory"]
        tmp = next(volume for volume in spec["volumes"] if volume["name"] == "tmp")
        assert "emptyDir" in tmp
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_every_service_has_its_service_budget_and_policy(overlay: tuple[str, list[Manifest]]) -> None:
    _, docs = overlay
    services, budgets = of_kind(docs, "Service"), of_kind(docs, "PodDisruptionBudget")
    policies = of_kind(docs, "NetworkPolicy")
    guarded = policies["caseloop-services"]["spec"]["podSelector"]["matchLabels"]

    for name in SERVICE_NAMES:
        labels = of_kind(docs, "Deployment")[name]["spec"]["template"]["metadata"]["labels"]
        assert services[name]["spec"]["selector"].items() <= labels.items()
        assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert guarded.items() <= labels.items()
    migrate = of_kind(docs, "Job")["caseloop-migrate"]
    assert migrate["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert policies["caseloop-migrate"]["spec"]["podSelector"]["matchLabels"].items() <= (
        migrate["spec"]["template"]["metadata"]["labels"].items()
    )


def test_every_setting_of_the_config_map_is_one_the_services_read(overlay: tuple[str, list[Manifest]]) -> None:
    _, docs = overlay
    config = config_of(docs)
    known = {name.upper() for name in KafkaSettings.model_fields} | {
        str(field.validation_alias).upper()
        for field in ServiceSettings.model_fields.values()
        if isinstance(field.validation_alias, str)
    }

    assert set(config) <= known, set(config) - known
    kafka = KafkaSettings.model_validate({name.lower(): value for name, value in config.items()})
    assert kafka.kafka_security_protocol == "SSL"


def test_the_kafka_certificates_are_mounted_where_the_settings_look_and_name_the_service_user(
    overlay: tuple[str, list[Manifest]],
) -> None:
    _, docs = overlay
    config = config_of(docs)
    users = of_kind(docs, "KafkaUser")

    for name, deployment in of_kind(docs, "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        mounts = {mount["name"]: mount["mountPath"] for mount in spec["containers"][0]["volumeMounts"]}
        secrets = {volume["name"]: volume["secret"]["secretName"] for volume in spec["volumes"] if "secret" in volume}
        for setting, volume in (
            ("KAFKA_SSL_CERTFILE", "kafka-user"),
            ("KAFKA_SSL_KEYFILE", "kafka-user"),
            ("KAFKA_SSL_CAFILE", "kafka-ca"),
        ):
            assert str(PurePosixPath(config[setting]).parent) == mounts[volume]
        assert secrets["kafka-user"] in users
        assert secrets["kafka-user"] == f"caseloop-{name}"
        assert secrets["kafka-ca"] == "caseloop-cluster-ca-cert"


def test_the_services_find_the_brokers_and_the_database_by_the_names_the_operators_give_them(
    overlay: tuple[str, list[Manifest]],
) -> None:
    """Strimzi names the bootstrap Service <kafka>-kafka-bootstrap and the CA Secret
    <kafka>-cluster-ca-cert; CloudNativePG the primary's Service <cluster>-rw; both label their pods."""
    _, docs = overlay
    (kafka,) = of_kind(docs, "Kafka").values()
    (cluster,) = of_kind(docs, "Cluster").values()
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    kafka_name, cluster_name = kafka["metadata"]["name"], cluster["metadata"]["name"]
    egress = of_kind(docs, "NetworkPolicy")["caseloop-services"]["spec"]["egress"]
    reachable = {
        (label, value, port["port"])
        for rule in egress
        for peer in rule["to"]
        for label, value in peer.get("podSelector", {}).get("matchLabels", {}).items()
        for port in rule["ports"]
    }

    assert config_of(docs)["KAFKA_BOOTSTRAP_SERVERS"] == f"{kafka_name}-kafka-bootstrap:{listener['port']}"
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "tls"
    assert ("strimzi.io/cluster", kafka_name, listener["port"]) in reachable
    assert ("cnpg.io/cluster", cluster_name, 5432) in reachable
    for name, deployment in of_kind(docs, "Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        url = next(e["value"] for e in spec["containers"][0]["env"] if e["name"] == f"{name.upper()}_DATABASE_URL")
        assert f"@{cluster_name}-rw:5432/{name}" in url
        ca = next(volume["secret"]["secretName"] for volume in spec["volumes"] if volume["name"] == "kafka-ca")
        assert ca == f"{kafka_name}-cluster-ca-cert"


def test_every_resource_lands_in_the_overlay_namespace(overlay: tuple[str, list[Manifest]]) -> None:
    name, docs = overlay
    namespace = "caseloop" if name == "prod" else "caseloop-dev"

    assert {doc["metadata"]["name"] for doc in docs if doc["kind"] == "Namespace"} == {namespace}
    assert {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"} == {namespace}


# ------------------------------------------------------------------------------------------- Kafka


def test_kafka_runs_in_kraft_mode_with_three_controllers_and_three_brokers(prod: list[Manifest]) -> None:
    (kafka,) = of_kind(prod, "Kafka").values()
    pools = of_kind(prod, "KafkaNodePool")

    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    assert {name: (pool["spec"]["roles"], pool["spec"]["replicas"]) for name, pool in pools.items()} == {
        "controller": (["controller"], 3),
        "broker": (["broker"], 3),
    }
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == 2
    assert all(pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"] for pool in pools.values())


def test_there_is_a_topic_for_every_topic_of_the_code_with_the_configured_partitions(
    overlay: tuple[str, list[Manifest]],
) -> None:
    name, docs = overlay
    config = config_of(docs)
    topics = {topic["spec"]["topicName"]: topic["spec"] for topic in of_kind(docs, "KafkaTopic").values()}
    replicas = 3 if name == "prod" else 1

    assert set(topics) == set(all_topics(config["CASELOOP_TOPIC_NAMESPACE"]))
    assert deadletter_topic(config["CASELOOP_TOPIC_NAMESPACE"]) in topics
    for spec in topics.values():
        # The services refuse to start on topics of another partition count than they are told.
        assert spec["partitions"] == int(config["CASELOOP_TOPIC_PARTITIONS"])
        assert spec["replicas"] == int(config["CASELOOP_TOPIC_REPLICATION"]) == replicas
        assert spec["config"]["min.insync.replicas"] == (2 if name == "prod" else 1)
        assert spec["config"]["retention.ms"] == -1


def acls_of(user: Manifest) -> set[tuple[str, str, str, str]]:
    return {
        (acl["resource"]["type"], acl["resource"]["name"], acl["resource"].get("patternType", "literal"), operation)
        for acl in user["spec"]["authorization"]["acls"]
        for operation in acl["operations"]
    }


def acls_the_code_needs(name: str, namespace: str) -> set[tuple[str, str, str, str]]:
    """From the service's definition: write its own topic (the relay) and read it (the relay's check);
    read what its consumer consumes, write the dead letters it sends; describe the topics (the check
    at start that they exist). The consumers assign partitions themselves: no group."""
    kafka = KafkaSettings(caseloop_topic_namespace=namespace)
    service = service_spec(name).service("sqlite+aiosqlite:///:memory:", kafka)
    needed = {("topic", service.topic, "literal", operation) for operation in ("Describe", "Read", "Write")}
    needed |= {
        ("topic", topic, "literal", operation) for topic in service.consumes for operation in ("Describe", "Read")
    }
    if service.consumes:
        needed |= {("topic", kafka.deadletter_topic, "literal", operation) for operation in ("Describe", "Write")}
    needed.add(("topic", f"{namespace}.", "prefix", "Describe"))
    return needed


def test_each_service_may_write_only_its_own_topic_and_read_only_what_it_consumes(
    overlay: tuple[str, list[Manifest]],
) -> None:
    _, docs = overlay
    namespace = config_of(docs)["CASELOOP_TOPIC_NAMESPACE"]
    users = of_kind(docs, "KafkaUser")

    assert set(users) == {f"caseloop-{name}" for name in SERVICE_NAMES} | {"caseloop-operator"}
    for name in SERVICE_NAMES:
        assert acls_of(users[f"caseloop-{name}"]) == acls_the_code_needs(name, namespace), name
        assert users[f"caseloop-{name}"]["spec"]["authentication"]["type"] == "tls"


def consumer_groups_joined(folders: list[Path], root: Path = ROOT) -> list[str]:
    """Where production code makes a Kafka client join a consumer group (a ``group_id`` other than None)."""
    joined = []
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    for keyword in node.keywords:
                        if keyword.arg == "group_id" and not (
                            isinstance(keyword.value, ast.Constant) and keyword.value.value is None
                        ):
                            joined.append(f"{path.relative_to(root)}:{node.lineno}")
    return joined


def test_no_service_joins_a_consumer_group_so_no_user_has_a_group_acl(prod: list[Manifest]) -> None:
    """The consumers assign partitions themselves. A consumer that joins a group needs a group ACL in
    its KafkaUser: this fails first, to say so."""
    production_code = [ROOT / "libs/events/src/caseloop_events/runtime", *sorted(ROOT.glob("services/*/src"))]

    assert consumer_groups_joined(production_code) == []
    for user in of_kind(prod, "KafkaUser").values():
        assert {acl["resource"]["type"] for acl in user["spec"]["authorization"]["acls"]} == {"topic"}


def test_a_consumer_joining_a_group_is_found(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "grouped.py").write_text(
        "AIOKafkaConsumer(group_id=None)\nAIOKafkaConsumer(bootstrap_servers=b, group_id=f'caseloop-{name}')\n"
    )

    assert [place.rpartition(":")[2] for place in consumer_groups_joined([code], root=tmp_path)] == ["2"]


# ------------------------------------------------------------------------------------- PostgreSQL


def test_postgresql_has_three_instances_and_a_database_and_role_per_service(prod: list[Manifest]) -> None:
    (cluster,) = of_kind(prod, "Cluster").values()
    databases = {db["spec"]["name"]: db["spec"] for db in of_kind(prod, "Database").values()}
    roles = {role["name"]: role for role in cluster["spec"]["managed"]["roles"]}

    assert cluster["spec"]["instances"] == 3
    assert set(databases) == set(roles) == set(SERVICE_NAMES)
    for name, database in databases.items():
        assert database["owner"] == name
        assert database["cluster"]["name"] == cluster["metadata"]["name"]
        assert roles[name]["passwordSecret"]["name"] == f"caseloop-db-{name}"
