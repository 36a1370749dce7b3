"""Every label, annotation, name prefix and field manager devjobs uses on Kubernetes.

Declared once, here; every module that writes or reads one of these imports it from
this module. Catalyst's own keys are in `devjobs.catalyst`; Kubernetes' own
(`batch.kubernetes.io/job-name`) are at the end.
"""

from __future__ import annotations

PREFIX = "devjobs.dev"


def key(name: str) -> str:
    """`devjobs.dev/<name>`, devjobs' label and annotation namespace."""
    return f"{PREFIX}/{name}"


# --- who writes -------------------------------------------------------------------------

FIELD_MANAGER = "devjobs"
"""Server-side apply and status patches of `devjobs run` and the controller alike: both
own the same fields (Jobs, the workload's init containers, devjobs' conditions)."""
CONTROLLER_COMPONENT = "devjobs-controller"
"""The field manager of the controller's annotation patches and the source of its Events."""

# --- the standard labels on everything devjobs creates ---------------------------------------

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "devjobs"
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT_STANDARD = "app.kubernetes.io/component"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_PART_OF = "app.kubernetes.io/part-of"

# --- Jobs -------------------------------------------------------------------------------

LABEL_ENVIRONMENT = key("environment")
"""On Jobs, their pods and log records: the Environment's name (`naming.label_value`)."""
LABEL_SOURCE = key("source")
LABEL_JOB = key("job")
LABEL_TRIGGER = key("trigger")
CI_JOB_TYPE = "ci"
"""The value of Catalyst's job-type label (`catalyst.BUILD_TYPE_LABEL`) on devjobs' Jobs."""

ANNOTATION_ENVIRONMENT_NAMESPACE = key("environment-namespace")
"""On Jobs and log records in a target namespace: the namespace of their Environment."""
ANNOTATION_COMMIT = key("commit")
ANNOTATION_SPEC_HASH = key("spec-hash")
ANNOTATION_BASE_HASH = key("base-hash")
"""The spec hash without the attempt: equal for every attempt of the same run."""
ANNOTATION_ATTEMPT = key("attempt")
ANNOTATION_JOB_KEY = key("job-key")
ANNOTATION_CONTAINERS = key("containers")
ANNOTATION_REQUEST = key("request")
"""On a Manual Job: the id of the request that started it."""
ANNOTATION_GITHUB_STATE = key("github-state")
"""On a Job: the GitHub commit state last posted for it."""
ANNOTATION_CHECK_RUN = key("check-run")
"""On a Job, with a GitHub App: its check run, `<id>:<status>[:<conclusion>]` as last
posted (the id so a restarted controller updates it instead of creating another)."""

# --- the Environment --------------------------------------------------------------------

ANNOTATION_RUN = key("run")
"""`job[,job]`: the Manual jobs a UI or a user asks the controller to start."""
RUN_HINT = f"{ANNOTATION_RUN}="

# --- the workload -----------------------------------------------------------------------

INIT_PREFIX = "devjobs-"
"""Every container devjobs adds (clone, setup steps, InitContainer jobs) starts so, and
nothing else of the workload's may: an init container named so is devjobs'."""
WORKLOAD_NAME_PREFIX = "devjobs"
"""The first part of the workload's init container and volume names (`devjobs-<source>-…`)."""
LABEL_WORKLOAD = key("workload")
"""On the workload's pod template (with devjobs' init containers): the Environment whose
InitContainer jobs its pods run. The controller watches pods by it."""


def init_github_state_annotation(job_key: str) -> str:
    """On the workload Deployment, one per InitContainer job: the GitHub state last
    posted for it, `<state>@<commit>` (the Deployment outlives commits)."""
    from devjobs.kube.naming import label_value

    source, _, job = job_key.partition("/")
    return key(label_value(f"github-state.{source}.{job}"))


GITHUB_STATE_ANNOTATION_PREFIX = f"{ANNOTATION_GITHUB_STATE}."


def init_check_run_annotation(job_key: str) -> str:
    """On the workload Deployment, one per InitContainer job: its check run as last
    posted, `<id>:<status>[:<conclusion>]@<commit>`."""
    from devjobs.kube.naming import label_value

    source, _, job = job_key.partition("/")
    return key(label_value(f"check-run.{source}.{job}"))


CHECK_RUN_ANNOTATION_PREFIX = f"{ANNOTATION_CHECK_RUN}."
PREDEPLOY_GATE = key("predeploy")
"""The scheduling gate (`spec.schedulingGates[].name`) that `deploy/predeploy-gate.yaml`'s
MutatingAdmissionPolicy (or, on older clusters, the webhook `kube.gate_admission`) puts on
every new workload pod in an environment namespace, and that the controller removes once
the commit's PreDeploy jobs succeeded (`controller.gates`)."""
WEBHOOK_DELIVERIES = "devjobs-webhook-deliveries"
"""The ConfigMap in the controller's namespace remembering GitHub webhook deliveries
acted on (delivery id -> epoch seconds), so a replay is refused across restarts."""

# --- log records ------------------------------------------------------------------------

LABEL_COMPONENT = key("component")
LOG_COMPONENT = "log-tail"
LOG_SELECTOR = f"{LABEL_COMPONENT}={LOG_COMPONENT}"
ANNOTATION_LOG_JOB_NAME = key("job-name")
"""On a log record: the Job whose pod's logs it holds (kept once per Job)."""
ANNOTATION_ENVIRONMENT = key("environment")
"""On a log record: the Environment's exact name (labels may have to shorten it)."""
LOG_RECORD_PREFIX = "devjobs-log-"

# --- the PreDeploy gate's record (kube.openings) ------------------------------------------

OPENINGS_COMPONENT = "predeploy-openings"
OPENINGS_NAME = "devjobs-openings"
"""The record's ConfigMap name, before `-<environment>` (`kube.openings.record_name`)."""
CONFIGMAP_SELECTOR = f"{LABEL_COMPONENT} in ({LOG_COMPONENT},{OPENINGS_COMPONENT})"
"""The controller's ConfigMaps in jobs namespaces: log records and gate records."""
ANNOTATION_GENERATED_FROM = key("generated-from")
"""On the jobs-aware Project CRD that `python -m devjobs.schemas` writes: what it adds."""

# --- Kubernetes' own --------------------------------------------------------------------

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
"""Set by the Job controller on a Job's pods."""
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
"""Set by the Deployment controller on a ReplicaSet's pods: which pod template they are."""
