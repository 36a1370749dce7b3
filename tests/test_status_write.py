"""write_conditions against a real API server with Catalyst's Environment CRD: devjobs'
conditions are merged by type and never clobber Catalyst's, nothing is written when nothing
changed, conflicts are retried, RBAC denial is a clear error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from devjobs.catalyst import GROUP as ENV_GROUP
from devjobs.catalyst import VERSION as ENV_VERSION
from devjobs.errors import DevjobsError
from devjobs.kube.client import Kube
from devjobs.kube.conditions import aggregate_condition, condition_type, job_condition
from devjobs.kube.jobstate import JobState, Phase
from devjobs.kube.status import write_conditions
from devjobs.resolver.environment import PLURAL as ENV_PLURAL

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CATALYST = "catalyst-operator"


def _state(phase: Phase, job: str = "test", **kw: Any) -> JobState:
    base: dict[str, Any] = {
        "source": "web",
        "job": job,
        "phase": phase,
        "reason": phase.value,
        "exit_code": None,
        "started": datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        "finished": None,
        "message": phase.value.lower(),
        "commit": "abc",
        "job_name": f"web-{job}",
    }
    base.update(kw)
    return JobState(**base)


def ready(message: str = "deployed", status: str = "True") -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": "Deployed",
        "message": message,
        "lastTransitionTime": "2024-05-01T09:00:00Z",
        "observedGeneration": 1,
    }


class Envs:
    """Environment CRs in one namespace, plus Catalyst's way of writing their status."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self.client = api_client
        # Any: the generated client's models are not what the tests pass (plain dicts).
        self.api: Any = client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def create(self, name: str = "pr-1") -> dict[str, Any]:
        body = {
            "apiVersion": f"{ENV_GROUP}/{ENV_VERSION}",
            "kind": "Environment",
            "metadata": {"name": name},
            "spec": {"projectRef": {"name": "app"}, "type": "development"},
        }
        return dict(
            self.api.create_namespaced_custom_object(
                ENV_GROUP, ENV_VERSION, self.namespace, ENV_PLURAL, body
            )
        )

    def get(self, name: str = "pr-1") -> dict[str, Any]:
        return dict(
            self.api.get_namespaced_custom_object(
                ENV_GROUP, ENV_VERSION, self.namespace, ENV_PLURAL, name
            )
        )

    def catalyst_update(
        self, name: str = "pr-1", *, ready_message: str = "deployed", phase: str = "Ready"
    ) -> None:
        """What Catalyst's operator does: read, rebuild the whole status keeping the
        conditions it read, set its own, update with the resourceVersion checked."""
        env = self.get(name)
        status = dict(env.get("status") or {})
        conditions = [c for c in status.get("conditions") or [] if c["type"] != "Ready"]
        status["conditions"] = [ready(ready_message), *conditions]
        status["phase"] = phase
        env["status"] = status
        self.api.replace_namespaced_custom_object_status(
            ENV_GROUP, ENV_VERSION, self.namespace, ENV_PLURAL, name, env, field_manager=CATALYST
        )

    def conditions(self, name: str = "pr-1") -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in (self.get(name).get("status") or {}).get("conditions") or []}


@pytest.fixture
def envs(kube_client: Any, namespace: str, catalyst_crds: list[str]) -> Envs:
    return Envs(kube_client, namespace)


def test_devjobs_conditions_land_next_to_catalysts_which_stay_untouched(envs: Envs) -> None:
    envs.create()
    envs.catalyst_update()
    states = [_state(Phase.RUNNING, "test"), _state(Phase.SUCCEEDED, "lint", exit_code=0)]
    desired = [job_condition(s, generation=1) for s in states] + [
        aggregate_condition(states, generation=1)
    ]

    assert write_conditions(Kube(envs.client), envs.namespace, "pr-1", desired, now=NOW) is True

    conds = envs.conditions()
    assert conds["Ready"] == ready()
    assert conds["Job.web.test"]["status"] == "Unknown"
    assert conds["Job.web.lint"]["reason"] == "Succeeded"
    assert conds["JobsSucceeded"]["status"] == "Unknown"
    assert envs.get()["status"]["phase"] == "Ready"
    managers = {m["manager"]: m for m in envs.get()["metadata"]["managedFields"]}
    assert managers["devjobs"]["subresource"] == "status"
    assert 'k:{"type":"Job.web.test"}' in str(managers["devjobs"]["fieldsV1"])
    assert 'k:{"type":"Ready"}' not in str(managers["devjobs"]["fieldsV1"])


def test_writing_the_same_conditions_again_makes_no_request_that_changes_anything(
    envs: Envs,
) -> None:
    envs.create()
    desired = [job_condition(_state(Phase.RUNNING), generation=1)]
    assert write_conditions(Kube(envs.client), envs.namespace, "pr-1", desired, now=NOW) is True
    version = envs.get()["metadata"]["resourceVersion"]

    assert write_conditions(Kube(envs.client), envs.namespace, "pr-1", desired, now=NOW) is False

    assert envs.get()["metadata"]["resourceVersion"] == version


def test_environment_without_any_status_gets_one(envs: Envs) -> None:
    envs.create()
    assert "status" not in envs.get()
    write_conditions(
        Kube(envs.client),
        envs.namespace,
        "pr-1",
        [job_condition(_state(Phase.PENDING), generation=1)],
    )
    assert list(envs.conditions()) == ["Job.web.test"]


def test_devjobs_conditions_survive_catalysts_full_status_update_and_vice_versa(envs: Envs) -> None:
    envs.create()
    envs.catalyst_update(ready_message="building", phase="Building")
    write_conditions(
        Kube(envs.client),
        envs.namespace,
        "pr-1",
        [job_condition(_state(Phase.RUNNING), generation=1)],
        now=NOW,
    )

    envs.catalyst_update(ready_message="deployed", phase="Ready")
    assert envs.conditions()["Job.web.test"]["status"] == "Unknown"

    done = _state(
        Phase.FAILED,
        reason="BackoffLimitExceeded",
        exit_code=2,
        message="container job exited with code 2",
    )
    write_conditions(
        Kube(envs.client),
        envs.namespace,
        "pr-1",
        [job_condition(done, generation=1, log_tail="boom\n")],
        now=NOW,
    )

    conds = envs.conditions()
    assert conds["Ready"] == ready("deployed")
    assert conds["Job.web.test"]["status"] == "False"
    assert conds["Job.web.test"]["message"] == "container job exited with code 2\nboom"
    assert conds["Job.web.test"]["lastTransitionTime"] == "2024-05-01T12:00:00Z"
    assert envs.get()["status"]["phase"] == "Ready"


def test_last_transition_time_is_kept_while_the_status_stays_the_same(envs: Envs) -> None:
    envs.create()
    write_conditions(
        Kube(envs.client),
        envs.namespace,
        "pr-1",
        [job_condition(_state(Phase.PENDING), generation=1)],
        now=NOW,
    )
    first = envs.conditions()["Job.web.test"]["lastTransitionTime"]
    later = datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
    write_conditions(
        Kube(envs.client),
        envs.namespace,
        "pr-1",
        [job_condition(_state(Phase.RUNNING), generation=1)],
        now=later,
    )
    cond = envs.conditions()["Job.web.test"]
    assert (cond["reason"], cond["lastTransitionTime"]) == ("Running", first)


def test_a_concurrent_catalyst_update_between_read_and_write_is_a_conflict_that_is_retried(
    envs: Envs,
) -> None:
    envs.create()
    envs.catalyst_update(ready_message="building")
    reads: list[str] = []

    def catalyst_meanwhile(env: Any) -> None:
        reads.append(env["metadata"]["resourceVersion"])
        if len(reads) == 1:
            envs.catalyst_update(ready_message="deployed meanwhile")

    wrote = write_conditions(
        Kube(envs.client),
        envs.namespace,
        "pr-1",
        [job_condition(_state(Phase.RUNNING), generation=1)],
        after_read=catalyst_meanwhile,
    )

    assert wrote is True
    assert len(reads) == 2 and reads[0] != reads[1]  # the first write was refused, re-read
    conds = envs.conditions()
    assert conds["Ready"]["message"] == "deployed meanwhile"  # Catalyst's change was not lost
    assert "Job.web.test" in conds


def test_conflicting_every_time_gives_up_with_a_clear_error(envs: Envs) -> None:
    envs.create()
    counter = iter(range(100))

    def always_meanwhile(env: Any) -> None:
        envs.catalyst_update(ready_message=f"update {next(counter)}")

    with pytest.raises(DevjobsError, match=r"changed during each of 3 attempts") as err:
        write_conditions(
            Kube(envs.client),
            envs.namespace,
            "pr-1",
            [job_condition(_state(Phase.RUNNING), generation=1)],
            max_attempts=3,
            after_read=always_meanwhile,
        )
    assert err.value.place == f"environments/{envs.namespace}/pr-1"
    assert "Job.web.test" not in envs.conditions()


def test_missing_environment_is_a_clear_error(envs: Envs) -> None:
    with pytest.raises(DevjobsError, match="not found"):
        write_conditions(
            Kube(envs.client),
            envs.namespace,
            "nope",
            [job_condition(_state(Phase.RUNNING), generation=1)],
        )


def test_longest_valid_names_give_a_type_the_server_accepts(envs: Envs) -> None:
    envs.create()
    source, job = "s" * 63, "j-" * 31 + "j"
    desired = [job_condition(_state(Phase.RUNNING, job=job, source=source), generation=1)]
    write_conditions(Kube(envs.client), envs.namespace, "pr-1", desired)
    assert condition_type(source, job) in envs.conditions()


def test_every_type_condition_type_accepts_is_accepted_by_the_server(envs: Envs) -> None:
    """Python's regex and the API server's (Go) agree: 300 random name pairs over an
    alphabet of edge characters; every pair condition_type accepts is written at once."""
    import random

    rng = random.Random(4)
    alphabet = "abZ09" * 8 + "-_.:/= \n\tü"
    accepted: dict[str, JobState] = {}
    for _ in range(300):
        source = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
        job = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
        with contextlib.suppress(DevjobsError):
            accepted[condition_type(source, job)] = _state(Phase.RUNNING, job=job, source=source)
    assert 20 < len(accepted) < 300  # both outcomes exercised
    envs.create()
    desired = [job_condition(s, generation=1) for s in accepted.values()]
    assert write_conditions(Kube(envs.client), envs.namespace, "pr-1", desired) is True
    assert set(envs.conditions()) == set(accepted)


def test_the_server_rejects_a_type_with_a_colon_which_condition_type_refuses_first(
    envs: Envs,
) -> None:
    """Why condition_type validates: `Job:web:test` would fail every status write."""
    from kubernetes.client.exceptions import ApiException

    envs.create()
    bad = {
        **job_condition(_state(Phase.RUNNING), generation=1),
        "type": "Job:web:test",
        "lastTransitionTime": "2024-05-01T12:00:00Z",
    }
    with pytest.raises(ApiException) as err:
        envs.api.patch_namespaced_custom_object_status(
            ENV_GROUP,
            ENV_VERSION,
            envs.namespace,
            ENV_PLURAL,
            "pr-1",
            [{"op": "add", "path": "/status", "value": {"conditions": [bad]}}],
            _content_type="application/json-patch+json",
        )
    assert err.value.status == 422
    with pytest.raises(DevjobsError):
        condition_type("web:x", "test")


# --- RBAC ------------------------------------------------------------------------------


@pytest.fixture
def restricted(kube_client: Any, namespace: str, catalyst_crds: list[str]) -> Iterator[Any]:
    """A client for ServiceAccount `reader` that may get Environments but not patch their
    status, authenticated with a token from the TokenRequest API."""
    from kubernetes import client

    # Any: the generated client's models are not what the tests pass (plain dicts).
    core: Any = client.CoreV1Api(kube_client)
    rbac: Any = client.RbacAuthorizationV1Api(kube_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "env-reader"},
            "rules": [
                {"apiGroups": [ENV_GROUP], "resources": ["environments"], "verbs": ["get", "list"]}
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "env-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "env-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    admin = kube_client.configuration
    cfg = client.Configuration()
    cfg.host = admin.host
    cfg.ssl_ca_cert = admin.ssl_ca_cert
    cfg.verify_ssl = admin.verify_ssl
    cfg.tls_server_name = getattr(admin, "tls_server_name", None)
    cfg.api_key = {"BearerToken": f"Bearer {token}"}
    with client.ApiClient(cfg) as api_client:
        yield api_client


def test_rbac_denial_of_the_status_patch_is_a_clear_error(envs: Envs, restricted: Any) -> None:
    envs.create()
    # The reader can get it (RBAC is live: the role binding works)...
    with pytest.raises(DevjobsError) as err:
        write_conditions(
            Kube(restricted), envs.namespace, "pr-1",
            [job_condition(_state(Phase.RUNNING), generation=1)],
        )  # fmt: skip
    # ...but not patch its status.
    text = str(err.value)
    assert text.startswith(f"environments/{envs.namespace}/pr-1: forbidden:")
    assert 'cannot patch resource "environments/status"' in text
    assert (
        "devjobs needs `get` on environments.catalyst.catalyst.dev "
        "and `patch` on environments/status" in text
    )
    assert "\n" not in text
    assert envs.conditions() == {}


def test_rbac_denial_of_the_read_is_a_clear_error(
    envs: Envs, restricted: Any, namespace: str
) -> None:
    with pytest.raises(DevjobsError, match=r"forbidden: .*cannot get resource \"environments\""):
        write_conditions(
            Kube(restricted), "default", "pr-1",
            [job_condition(_state(Phase.RUNNING), generation=1)],
        )  # fmt: skip


def test_remove_drops_devjobs_conditions_in_the_same_patch_and_never_catalysts(
    envs: Envs,
) -> None:
    envs.create()
    envs.catalyst_update()
    old = [_state(Phase.SUCCEEDED, "old", exit_code=0), _state(Phase.RUNNING, "test")]
    first = [job_condition(s, generation=1) for s in old]
    assert write_conditions(Kube(envs.client), envs.namespace, "pr-1", first, now=NOW) is True
    before = envs.get()["metadata"]["resourceVersion"]

    desired = [job_condition(_state(Phase.SUCCEEDED, "test", exit_code=0), generation=1)]
    wrote = write_conditions(
        Kube(envs.client), envs.namespace, "pr-1", desired, now=NOW,
        remove=["Job.web.old", "Ready"],  # Ready is Catalyst's: never removed
    )  # fmt: skip

    assert wrote is True
    conds = envs.conditions()
    assert list(conds) == ["Ready", "Job.web.test"]
    assert conds["Ready"] == ready()
    assert conds["Job.web.test"]["status"] == "True"
    assert envs.get()["metadata"]["resourceVersion"] != before


def test_removing_alone_writes_and_removing_what_is_gone_writes_nothing(envs: Envs) -> None:
    envs.create()
    envs.catalyst_update()
    kept = job_condition(_state(Phase.RUNNING, "test"), generation=1)
    gone = job_condition(_state(Phase.RUNNING, "old"), generation=1)
    write_conditions(Kube(envs.client), envs.namespace, "pr-1", [kept, gone], now=NOW)

    assert (
        write_conditions(
            Kube(envs.client), envs.namespace, "pr-1", [kept], now=NOW, remove=["Job.web.old"]
        )
        is True
    )
    assert list(envs.conditions()) == ["Ready", "Job.web.test"]
    version = envs.get()["metadata"]["resourceVersion"]
    assert (
        write_conditions(
            Kube(envs.client), envs.namespace, "pr-1", [kept], now=NOW, remove=["Job.web.old"]
        )
        is False
    )
    assert envs.get()["metadata"]["resourceVersion"] == version


def test_a_concurrent_catalyst_update_during_a_removal_is_retried_and_kept(envs: Envs) -> None:
    envs.create()
    write_conditions(
        Kube(envs.client), envs.namespace, "pr-1",
        [job_condition(_state(Phase.RUNNING, "old"), generation=1)], now=NOW,
    )  # fmt: skip
    calls: list[str] = []

    def catalyst_writes_once(_: Any) -> None:
        if not calls:
            calls.append("x")
            envs.catalyst_update(ready_message="redeployed")

    assert write_conditions(
        Kube(envs.client), envs.namespace, "pr-1", [], now=NOW, remove=["Job.web.old"],
        after_read=catalyst_writes_once,
    ) is True  # fmt: skip
    conds = envs.conditions()
    assert list(conds) == ["Ready"]
    assert conds["Ready"]["message"] == "redeployed"
