"""The PreDeploy gate as a mutating admission webhook, for clusters without
MutatingAdmissionPolicy: the pure answer to an AdmissionReview, the controller's HTTPS
endpoint, the deploy/ component, and the real API server (tier 1: pods are created,
never scheduled) calling the endpoint on this machine through a
MutatingWebhookConfiguration as shipped, but for its `url` and caBundle."""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import json
import re
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devjobs import catalyst
from devjobs.cli import main
from devjobs.controller import gate_webhook
from devjobs.errors import DevjobsError
from devjobs.kube import gate_admission
from devjobs.kube.vocabulary import PREDEPLOY_GATE
from tests.cluster.procs import wait_for
from tests.test_controller_deploy import REPO, kubectl

POLICY = REPO / "deploy/predeploy-gate.yaml"
COMPONENT = REPO / "deploy/predeploy-gate-webhook"
WORKLOAD = dict([catalyst.WORKLOAD_POD_LABEL])
ENVIRONMENT_NS = {catalyst.NAMESPACE_TYPE_LABEL: catalyst.NAMESPACE_TYPE_ENVIRONMENT}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def shipped_webhook() -> dict[str, Any]:
    (config,) = [
        d
        for d in documents(COMPONENT / "webhook.yaml")
        if d["kind"] == "MutatingWebhookConfiguration"
    ]
    (webhook,) = config["webhooks"]
    return dict(webhook)


# --- the answer, pure -----------------------------------------------------------------------


def review(
    obj: Any = None, *, operation: str = "CREATE", resource: str = "pods", **request: Any
) -> dict[str, Any]:
    """An AdmissionReview as the API server sends it for `obj`."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "operation": operation,
            "namespace": "team-shop-pr-1",
            "object": obj,
            **request,
        },
    }


def pod(labels: dict[str, str] = WORKLOAD, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "labels": labels},
        "spec": {"containers": [{"name": "web", "image": "busybox"}], **spec},
    }


def answered(body: Any) -> dict[str, Any]:
    found = gate_admission.answer(json.dumps(body).encode())
    assert found.status == 200, found
    assert (found.body["apiVersion"], found.body["kind"]) == (
        "admission.k8s.io/v1",
        "AdmissionReview",
    )
    return dict(found.body["response"])


def patch_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["allowed"] is True and response["patchType"] == "JSONPatch", response
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return patch


def test_a_new_workload_pod_is_allowed_with_a_patch_adding_the_gate_list() -> None:
    response = answered(review(pod()))
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert patch_of(response) == [
        {"op": "add", "path": "/spec/schedulingGates", "value": [{"name": PREDEPLOY_GATE}]}
    ]


def test_a_pod_with_other_gates_gets_the_gate_appended_and_keeps_theirs() -> None:
    response = answered(review(pod(schedulingGates=[{"name": "example.com/quota"}])))
    assert patch_of(response) == [
        {"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": PREDEPLOY_GATE}}
    ]


def test_a_pod_gated_already_is_allowed_unchanged_never_gated_twice() -> None:
    gates = [{"name": "example.com/quota"}, {"name": PREDEPLOY_GATE}]
    response = answered(review(pod(schedulingGates=gates)))
    assert response == {"uid": review()["request"]["uid"], "allowed": True}


@pytest.mark.parametrize(
    "body",
    [
        review(pod(), operation="UPDATE", oldObject=pod()),
        review(None, operation="DELETE", oldObject=pod()),
        review({"metadata": {"name": "c"}}, resource="configmaps"),
        review(pod(), subResource="status"),
        review(pod(labels={"app": "db"})),
        review(pod(labels={})),
    ],
    ids=["update", "delete", "configmap", "subresource", "other-app", "unlabelled"],
)
def test_anything_but_a_workload_pods_create_is_allowed_unchanged(body: dict[str, Any]) -> None:
    assert answered(body) == {"uid": body["request"]["uid"], "allowed": True}


def test_a_dry_run_is_answered_as_the_real_create_would_be() -> None:
    assert answered(review(pod(), dryRun=True)) == answered(review(pod()))


@pytest.mark.parametrize(
    "obj",
    [None, "a pod", {"metadata": {"labels": WORKLOAD}}, pod(schedulingGates="x"),
     pod(schedulingGates=["x"]), {"metadata": "m", "spec": {}},
     {"metadata": {"labels": ["app"]}, "spec": {}}],
    ids=["none", "string", "no-spec", "gates-string", "gate-string", "metadata", "labels"],
)  # fmt: skip
def test_an_unreadable_pod_is_refused_rather_than_let_through_ungated(obj: Any) -> None:
    response = answered(review(obj))
    assert response["allowed"] is False and response["uid"] == review()["request"]["uid"]
    assert response["status"]["code"] == 400
    assert response["status"]["message"].startswith("devjobs PreDeploy gate: ")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "not a JSON object"),
        (b'{"apiVersion": NaN}', "not JSON: NaN"),
        (b'{"apiVersion": "admission.k8s.io/v1", "apiVersion": "x"}', "a duplicate key"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (json.dumps({**review(pod()), "apiVersion": "admission.k8s.io/v1beta1"}).encode(),
         "not an admission.k8s.io/v1 AdmissionReview"),
        (json.dumps({**review(pod()), "kind": "Pod"}).encode(), "not an admission"),
        (json.dumps({**review(), "request": "r"}).encode(), "no request"),
        (json.dumps(review(pod(), uid="")).encode(), "no request uid"),
        (json.dumps(review(pod(), uid=7)).encode(), "no request uid"),
        (b" " * (gate_admission.MAX_BODY + 1), "larger than"),
    ],
    ids=["empty", "truncated", "binary", "array", "nan", "duplicate-key", "deep", "v1beta1",
         "kind", "request", "empty-uid", "number-uid", "oversized"],
)  # fmt: skip
def test_garbage_is_refused_with_400_saying_why(body: bytes, reason: str) -> None:
    found = gate_admission.answer(body)
    assert found.status == 400 and reason in found.body["error"], found


# --- the HTTPS endpoint ---------------------------------------------------------------------


def certificate(
    subject: str, issuer: x509.Name | None, key: ec.EllipticCurvePrivateKey, days: int
) -> tuple[x509.CertificateBuilder, x509.Name]:
    """A certificate builder for `key`, valid from five minutes ago for `days`, issued by
    `issuer` (None: by itself), and its subject; extensions and signing are the caller's."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    return builder, name


class Authority:
    """A CA as certificate.yaml's CA Issuer holds one (its certificate self-signed, as the
    selfSigned Issuer makes it), issuing serving certificates for 127.0.0.1."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        builder, self.name = certificate("devjobs-gate-webhook-ca", None, self.key, 10)
        cert = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        ).sign(self.key, hashes.SHA256())
        self.cert = directory / "ca.crt"
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str) -> tuple[Path, Path]:
        """A serving certificate with a new key, as the Secret's tls.crt and tls.key, in
        a directory `name` of its own."""
        directory = self.directory / name
        directory.mkdir()
        key = ec.generate_private_key(ec.SECP256R1())
        builder, _ = certificate("devjobs-gate-webhook", self.name, key, 1)
        loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        cert = (
            builder.add_extension(x509.SubjectAlternativeName([loopback]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = directory / "tls.crt", directory / "tls.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


@dataclass
class Endpoint:
    """The controller's gate webhook on loopback, serving a certificate of `authority`
    from a Secret mounted at `mount`, and what it answered (pod, outcome)."""

    port: int
    authority: Authority
    mount: Path
    seen: list[tuple[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{gate_webhook.PATH}"

    def ca_bundle(self) -> str:
        return base64.b64encode(self.authority.cert.read_bytes()).decode()

    def connection(self) -> http.client.HTTPSConnection:
        context = ssl.create_default_context(cafile=str(self.authority.cert))
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=10)

    def post(self, body: bytes, path: str = gate_webhook.PATH) -> tuple[int, dict[str, Any]]:
        conn = self.connection()
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        reply = conn.getresponse()
        found = reply.status, json.loads(reply.read())
        conn.close()
        return found


@pytest.fixture
def endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    stop = threading.Event()
    authority, mount = Authority(tmp_path / "ca"), tmp_path / "mount"
    pair = mounted_secret(mount, authority.issue("first"))
    found = Endpoint(
        gate_webhook.serve("127.0.0.1", 0, *pair, stop).server_address[1], authority, mount
    )

    def recording(body: bytes) -> gate_admission.Answer:
        answer = gate_admission.answer(body)
        try:
            name = str(json.loads(body)["request"]["object"]["metadata"]["name"])
        except (ValueError, KeyError, TypeError):
            name = ""
        found.seen.append((name, answer.outcome))
        return answer

    monkeypatch.setattr(gate_webhook, "answer", recording)
    yield found
    stop.set()


def test_the_endpoint_answers_a_review_over_tls_with_its_uid(endpoint: Endpoint) -> None:
    status, body = endpoint.post(json.dumps(review(pod())).encode())
    assert status == 200 and body["response"]["uid"] == review()["request"]["uid"]
    assert patch_of(body["response"])[0]["value"] == [{"name": PREDEPLOY_GATE}]
    assert endpoint.seen == [("web-1", "gated")]
    # The API server adds its timeout to the configured path.
    status, _ = endpoint.post(json.dumps(review(pod())).encode(), f"{gate_webhook.PATH}?timeout=5s")
    assert status == 200


def test_the_endpoint_refuses_garbage_other_paths_methods_and_unsized_bodies(
    endpoint: Endpoint,
) -> None:
    assert endpoint.post(b"not json")[0] == 400
    assert endpoint.post(json.dumps(review(pod())).encode(), "/other")[0] == 404
    conn = endpoint.connection()
    conn.request("GET", gate_webhook.PATH)
    assert conn.getresponse().status == 405
    conn.close()
    conn = endpoint.connection()
    conn.putrequest("POST", gate_webhook.PATH)
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()


def test_an_oversized_body_is_refused_before_it_is_read(endpoint: Endpoint) -> None:
    conn = endpoint.connection()
    conn.putrequest("POST", gate_webhook.PATH)
    conn.putheader("Content-Length", str(gate_admission.MAX_BODY + 1))
    conn.endheaders()  # and no body: the answer comes without waiting for it
    reply = conn.getresponse()
    assert reply.status == 413 and "larger than" in json.loads(reply.read())["error"]
    conn.close()
    assert endpoint.seen == []


def test_plain_http_and_a_stalled_client_leave_the_endpoint_serving(endpoint: Endpoint) -> None:
    stalled = socket.create_connection(("127.0.0.1", endpoint.port))  # no handshake
    plain = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=5)
    with pytest.raises((http.client.HTTPException, OSError)):
        plain.request("POST", gate_webhook.PATH, b"{}")
        plain.getresponse()
    plain.close()
    assert endpoint.post(json.dumps(review(pod())).encode())[0] == 200
    stalled.close()


def mounted_secret(directory: Path, pair: tuple[Path, Path]) -> tuple[Path, Path]:
    """tls.crt and tls.key in `directory` as the kubelet mounts a Secret: symlinks
    through `..data` to a directory of the current version."""
    directory.mkdir()
    for name in ("tls.crt", "tls.key"):
        (directory / name).symlink_to(f"..data/{name}")
    update_secret(directory, pair)
    return directory / "tls.crt", directory / "tls.key"


def update_secret(directory: Path, pair: tuple[Path, Path]) -> None:
    """The kubelet's update: the new version in a directory of its own, then `..data`
    swapped to it by a rename, so a reader never sees half of it."""
    version = directory / f"..{time.monotonic_ns()}"
    version.mkdir()
    for source in pair:
        shutil.copy(source, version / source.name)
    (directory / "..data.tmp").symlink_to(version.name)
    (directory / "..data.tmp").replace(directory / "..data")


def served(port: int) -> bytes:
    """The certificate the endpoint presents (DER), not verified."""
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", port), timeout=5))


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_a_renewed_certificate_is_served_without_a_restart(endpoint: Endpoint) -> None:
    port, first = endpoint.port, endpoint.mount / "tls.crt"
    assert served(port) == der(first)
    renewed = endpoint.authority.issue("renewed")
    update_secret(endpoint.mount, renewed)
    # Within a second or so of the swap, a new connection gets the new certificate,
    # which the CA the clients already trust has signed.
    wait_for("the renewed certificate", lambda: served(port) == der(renewed[0]), 5)
    assert endpoint.post(json.dumps(review(pod())).encode())[0] == 200


def test_a_broken_renewal_keeps_the_old_certificate_serving_with_one_warning(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(gate_webhook, "CHECK_SECONDS", 0.0)  # every connection looks
    port, first = endpoint.port, der(endpoint.mount / "tls.crt")
    renewed = endpoint.authority.issue("renewed")
    (endpoint.authority.directory / "bad").mkdir()
    mismatched = (
        endpoint.authority.directory / "bad/tls.crt",
        endpoint.authority.directory / "bad/tls.key",
    )
    shutil.copy(renewed[0], mismatched[0])
    shutil.copy(endpoint.mount / "tls.key", mismatched[1])  # the new certificate, the old key
    with caplog.at_level("WARNING", logger=gate_webhook.log.name):
        update_secret(endpoint.mount, mismatched)
        for _ in range(3):
            assert served(port) == first
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "serving the certificate loaded before" in warning.getMessage()
    assert endpoint.post(json.dumps(review(pod())).encode())[0] == 200
    # A good pair after it is taken up as usual.
    update_secret(endpoint.mount, renewed)
    assert served(port) == der(renewed[0])


def test_the_controller_serves_the_gate_webhook_only_with_a_certificate_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before anything starts: the missing kubeconfig is never read."""
    kubeconfig = str(tmp_path / "no-kubeconfig")
    flags = ["controller", "--kubeconfig", kubeconfig, "--gate-webhook-address", "127.0.0.1:0"]
    assert main(flags) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "devjobs: error: --gate-webhook-address: needs --gate-webhook-cert and "
        "--gate-webhook-key (TLS)"
    )
    missing = tmp_path / "missing.pem"
    with pytest.raises(DevjobsError, match="cannot load"):
        gate_webhook.serve("127.0.0.1", 0, missing, missing, threading.Event())


def test_a_bad_server_address_stops_the_controller_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = str(tmp_path / "no-kubeconfig")
    for flag in ("--ui-address", "--webhook-address", "--gate-webhook-address"):
        extra = ["--gate-webhook-cert", kubeconfig, "--gate-webhook-key", kubeconfig]
        assert main(["controller", "--kubeconfig", kubeconfig, flag, "localhost", *extra]) == 1
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"devjobs: error: {flag}: 'localhost' is not HOST:PORT or :PORT"
        )


# --- deploy/ ----------------------------------------------------------------------------


def test_the_webhook_selects_exactly_the_pods_the_policy_selects() -> None:
    """One fact in two files: which pods get the gate (and how either fails)."""
    (policy,) = [d for d in documents(POLICY) if d["kind"] == "MutatingAdmissionPolicy"]
    constraints = policy["spec"]["matchConstraints"]
    webhook = shipped_webhook()
    assert webhook["namespaceSelector"] == constraints["namespaceSelector"]
    assert webhook["namespaceSelector"] == {"matchLabels": ENVIRONMENT_NS}
    assert webhook["objectSelector"] == constraints["objectSelector"]
    assert webhook["objectSelector"] == {"matchLabels": WORKLOAD}
    assert webhook["rules"] == constraints["resourceRules"]
    for setting in ("failurePolicy", "reinvocationPolicy"):
        assert webhook[setting] == policy["spec"][setting]
    assert (webhook["sideEffects"], webhook["admissionReviewVersions"]) == ("None", ["v1"])


def test_the_gate_named_in_the_policies_is_the_vocabularys() -> None:
    added = re.findall(r'name:\s*"([^"]+)"', " ".join(POLICY.read_text().split()))
    removable = re.findall(r'g\.name != "([^"]+)"', (REPO / "deploy/admission.yaml").read_text())
    assert added == removable == [PREDEPLOY_GATE]


def kustomize(kube_api: Any, directory: Path) -> list[dict[str, Any]]:
    return [
        d for d in yaml.safe_load_all(kubectl(kube_api, "kustomize", str(directory)).stdout) if d
    ]


def test_the_component_replaces_the_policy_by_the_webhook_the_controller_serves(
    kube_api: Any, tmp_path: Path
) -> None:
    """deploy/README's way: `components: [predeploy-gate-webhook]` in deploy/'s
    kustomization. Without it, deploy/ installs the policy and no webhook."""
    kinds = {d["kind"] for d in kustomize(kube_api, REPO / "deploy")}
    assert "MutatingAdmissionPolicy" in kinds and "MutatingWebhookConfiguration" not in kinds
    copy = tmp_path / "deploy"
    shutil.copytree(REPO / "deploy", copy)
    with (copy / "kustomization.yaml").open("a") as f:
        f.write("components:\n  - predeploy-gate-webhook\n")
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in kustomize(kube_api, copy)}
    assert not {kind for kind, _ in rendered} & {
        "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"
    }  # fmt: skip
    (config,) = [d for (kind, _), d in rendered.items() if kind == "MutatingWebhookConfiguration"]
    service_ref = config["webhooks"][0]["clientConfig"]["service"]
    assert service_ref["path"] == gate_webhook.PATH
    service = rendered[("Service", service_ref["name"])]
    assert service["metadata"]["namespace"] == service_ref["namespace"] == "devjobs-system"
    (port,) = service["spec"]["ports"]
    assert port["port"] == service_ref["port"]
    annotation = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    certificate = rendered[("Certificate", annotation.partition("/")[2])]
    assert (
        f"{service_ref['name']}.{service_ref['namespace']}.svc" in certificate["spec"]["dnsNames"]
    )
    # The caBundle is the serving certificate's ca.crt: a CA of the component's own that
    # outlives many renewals of the serving certificate and keeps its key when renewed,
    # so no renewal leaves the API server trusting something no replica serves.
    ca_issuer = rendered[("Issuer", certificate["spec"]["issuerRef"]["name"])]["spec"]["ca"]
    (ca,) = [
        d
        for (kind, _), d in rendered.items()
        if kind == "Certificate" and d["spec"]["secretName"] == ca_issuer["secretName"]
    ]
    assert ca["spec"]["isCA"] is True and ca["spec"]["privateKey"]["rotationPolicy"] == "Never"
    assert "selfSigned" in rendered[("Issuer", ca["spec"]["issuerRef"]["name"])]["spec"]
    assert hours(ca["spec"]["duration"]) >= 5 * hours(certificate["spec"]["duration"])

    deployment = rendered[("Deployment", "devjobs-controller")]["spec"]["template"]["spec"]
    (container,) = deployment["containers"]
    flags = dict(a.split("=", 1) for a in container["args"] if a.startswith("--gate-webhook"))
    served = {p["name"]: p["containerPort"] for p in container["ports"]}[port["targetPort"]]
    assert flags["--gate-webhook-address"] == f"0.0.0.0:{served}"
    (mount,) = [m for m in container["volumeMounts"] if flags["--gate-webhook-cert"].startswith(
        m["mountPath"] + "/")]  # fmt: skip
    (volume,) = [v for v in deployment["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    assert {flags["--gate-webhook-cert"], flags["--gate-webhook-key"]} == {
        f"{mount['mountPath']}/tls.crt", f"{mount['mountPath']}/tls.key"
    }  # fmt: skip
    # Reviews go to replicas that listen: Ready is the webhook port accepting.
    assert container["readinessProbe"]["tcpSocket"]["port"] == port["targetPort"]
    # The default install's flags and ports are all still there.
    default = yaml.safe_load((REPO / "deploy/deployment.yaml").read_text())
    (before,) = default["spec"]["template"]["spec"]["containers"]
    assert container["args"][: len(before["args"])] == before["args"]
    assert container["ports"][: len(before["ports"])] == before["ports"]


def hours(duration: str) -> int:
    assert re.fullmatch(r"[0-9]+h", duration), duration
    return int(duration[:-1])


# --- the real API server --------------------------------------------------------------------


@dataclass
class Registered:
    """The webhook registered with the API server, and namespaces it may or may not select."""

    endpoint: Endpoint
    core: Any
    environment: str
    plain: str

    def create(
        self, namespace: str, name: str, labels: dict[str, str], dry_run: bool = False
    ) -> list[str]:
        """Create a pod (never scheduled: no node, or it is gated); its gates' names."""
        resources = {"cpu": "10m", "memory": "16Mi"}
        body = {
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
                "requests": resources, "limits": resources}}]},
        }  # fmt: skip
        made = self.core.create_namespaced_pod(
            namespace, body, **({"dry_run": "All"} if dry_run else {})
        )
        return [g.name for g in made.spec.scheduling_gates or []]


@pytest.fixture
def registered(kube_api: Any, kube_client: Any, endpoint: Endpoint) -> Iterator[Registered]:
    """deploy/'s webhook calling `endpoint` by url (the API server runs on this machine),
    for namespaces of this test only (an extra namespace label: other tests' workload pods
    are left alone)."""
    from kubernetes import client

    core: Any = client.CoreV1Api(kube_client)
    admission: Any = client.AdmissionregistrationV1Api(kube_client)
    run = f"dj-gwh-{time.monotonic_ns() % 10**8}"
    only_here = {"devjobs-test/gate-webhook": run}
    webhook = shipped_webhook()
    webhook["clientConfig"] = {"url": endpoint.url, "caBundle": endpoint.ca_bundle()}
    webhook["namespaceSelector"]["matchLabels"].update(only_here)
    config = {"metadata": {"name": run}, "webhooks": [webhook]}
    environment, plain = f"{run}-env", f"{run}-plain"
    core.create_namespace(
        {"metadata": {"name": environment, "labels": {**ENVIRONMENT_NS, **only_here}}}
    )
    core.create_namespace({"metadata": {"name": plain, "labels": only_here}})
    admission.create_mutating_webhook_configuration(config)
    found = Registered(endpoint, core, environment, plain)
    try:

        def gated() -> bool:
            return found.create(environment, "probe", WORKLOAD, dry_run=True) == [PREDEPLOY_GATE]

        wait_for("the webhook to take effect", gated, 30)
        endpoint.seen.clear()
        yield found
    finally:
        admission.delete_mutating_webhook_configuration(run)
        for namespace in (environment, plain):
            core.delete_namespace(namespace)


def test_the_api_server_gates_new_workload_pods_in_environment_namespaces_through_the_webhook(
    registered: Registered,
) -> None:
    assert registered.create(registered.environment, "web-1", WORKLOAD) == [PREDEPLOY_GATE]
    assert registered.create(registered.environment, "db-1", {"app": "db"}) == []
    assert registered.create(registered.plain, "web-1", WORKLOAD) == []
    # The configuration's selectors decided: the endpoint saw only the workload pod.
    assert registered.endpoint.seen == [("web-1", "gated")]


def test_with_the_policy_installed_too_a_workload_pod_gets_the_gate_once(
    kube_api: Any, registered: Registered
) -> None:
    kubectl(kube_api, "apply", "-f", str(POLICY))
    try:
        # The policy mutates first: in effect once the webhook sees the pod gated already.
        def both() -> bool:
            registered.create(registered.environment, "probe", WORKLOAD, dry_run=True)
            return ("probe", "unchanged: gated already") in registered.endpoint.seen

        wait_for("the policy to take effect beside the webhook", both, 30)
        registered.endpoint.seen.clear()
        assert registered.create(registered.environment, "web-2", WORKLOAD) == [PREDEPLOY_GATE]
        assert registered.endpoint.seen == [("web-2", "unchanged: gated already")]
    finally:
        for kind in ("mutatingadmissionpolicybinding", "mutatingadmissionpolicy"):
            kubectl(kube_api, "delete", kind, "devjobs-predeploy-gate", "--ignore-not-found")


@pytest.fixture
def short_keepalive(monkeypatch: pytest.MonkeyPatch) -> float:
    """The endpoint closes a connection idle for a second (not ten), so the API server's
    next review after a certificate swap comes on a new connection, a new handshake."""
    monkeypatch.setattr(gate_webhook.Handler, "timeout", 1)
    return 1.5


def test_a_renewed_serving_certificate_keeps_the_api_server_gating_with_the_same_ca_bundle(
    short_keepalive: float, registered: Registered
) -> None:
    """The caBundle the API server holds never changes: the webhook's next certificate,
    signed by the same CA, is trusted the moment a replica serves it. A certificate of
    another CA (what a renewal of a self-signed certificate is) is not: pods are refused."""
    from kubernetes.client.exceptions import ApiException

    endpoint = registered.endpoint

    def swap(pair: tuple[Path, Path]) -> None:
        update_secret(endpoint.mount, pair)
        wait_for("the swapped certificate", lambda: served(endpoint.port) == der(pair[0]), 5)
        time.sleep(short_keepalive)  # the API server's open connections are closed

    swap(endpoint.authority.issue("renewed"))
    assert registered.create(registered.environment, "web-renewed", WORKLOAD) == [PREDEPLOY_GATE]
    assert endpoint.seen == [("web-renewed", "gated")]

    swap(Authority(endpoint.authority.directory / "other").issue("foreign"))
    with pytest.raises(ApiException) as refused:
        registered.create(registered.environment, "web-foreign", WORKLOAD)
    assert "failed calling webhook" in str(refused.value.body), refused.value.body
    assert endpoint.seen == [("web-renewed", "gated")]
