"""Everything devjobs believes about Catalyst's operator, in one place.

Each fact here was read from the operator's source (`../shared/catalyst/operator`,
`internal/controller/`) and is checked against the real operator by the tier-2 tests
(`tests/test_catalyst_operator.py`); `tests/catalyst.py` imitates it only where the two
agree. When Catalyst changes, this module is what changes.

- Which labels an Environment carries, and where its Project lives (the team's namespace).
- The target namespace that holds its builds, its workload and everything devjobs runs
  for it (`target_namespace`), computed as `GenerateEnvironmentNamespace` does.
- The deployment mode (`deployment_mode`), which modes devjobs follows
  (`SUPPORTED_MODES`), and per mode the workload's Deployment and main container
  (`Workload`).
- What an image build Job looks like (labels, name, image it pushes) and what the
  Environment's phases mean.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GROUP = "catalyst.catalyst.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# --- the Environment ------------------------------------------------------------------

LABEL_TEAM = "catalyst.dev/team"
LABEL_PROJECT = "catalyst.dev/project"
LABEL_ENVIRONMENT = "catalyst.dev/environment"
HIERARCHY_LABELS = (LABEL_TEAM, LABEL_PROJECT, LABEL_ENVIRONMENT)
"""Without all three the operator never reconciles an Environment."""
NAMESPACE_TYPE_LABEL = "catalyst.dev/namespace-type"
NAMESPACE_TYPE_ENVIRONMENT = "environment"
"""The operator labels each target namespace so (`deploy/admission.yaml` keys on it)."""
FINALIZER = "catalyst.dev/finalizer"
"""The operator's: deleting the Environment deletes its target namespace first."""

PHASE_PENDING = "Pending"
PHASE_PROVISIONING = "Provisioning"
PHASE_BUILDING = "Building"
PHASE_READY = "Ready"
PHASE_FAILED = "Failed"
PROVISIONING_PHASES = frozenset({"", PHASE_PENDING, PHASE_PROVISIONING})
"""Phases before the operator has provisioned the environment. It writes only
`status.phase` and `status.url` (a whole-status update) and never conditions."""

MAX_NAMESPACE = 63
_NAMESPACE_INVALID = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-+")


def _sanitize(component: str) -> str:
    """`sanitizeNamespaceComponent`: lower case, runs of other characters to one `-`."""
    return _DASHES.sub("-", _NAMESPACE_INVALID.sub("-", component.lower())).strip("-")


def namespace_name(*components: str) -> str:
    """`GenerateNamespaceWithHash`: the sanitised components joined by `-`; past 63
    characters, the first 57 (trailing `-` trimmed), `-`, and 5 hex characters of the
    SHA-256 of the whole joined name."""
    full = "-".join(c for c in (_sanitize(part) for part in components) if c)
    if len(full) <= MAX_NAMESPACE:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:5]
    return f"{full[:57].rstrip('-')}-{digest}"


def target_namespace(team: str, project: str, environment: str) -> str:
    """Where the operator puts everything of an Environment: `<team>-<project>-<env>`."""
    return namespace_name(team, project, environment)


@dataclass(frozen=True)
class Hierarchy:
    """The three labels that place an Environment: its team, project and name."""

    team: str
    project: str
    environment: str

    @property
    def target_namespace(self) -> str:
        return target_namespace(self.team, self.project, self.environment)

    @property
    def project_namespace(self) -> str:
        """The operator reads the Project from the namespace named by the team label,
        verbatim (not sanitised)."""
        return self.team


def hierarchy(labels: Mapping[str, Any] | None) -> Hierarchy | None:
    """The Environment's place from its labels; None when one of the three is missing
    or empty (the operator then refuses it on every try)."""
    values = [(labels or {}).get(key) for key in HIERARCHY_LABELS]
    if not all(isinstance(v, str) and v for v in values):
        return None
    team, project, environment = (str(v) for v in values)
    return Hierarchy(team, project, environment)


@dataclass(frozen=True)
class Place:
    """Where an Environment's objects are."""

    environment_namespace: str
    """The Environment's own: its Events and the condition writes go there."""
    target_namespace: str
    """The operator's builds and workload, and everything devjobs runs for it (Jobs, their
    pods, log records). Owner references cannot cross namespaces, so objects here are
    owned by the Environment only when this is its own namespace; otherwise the operator's
    deletion of the target namespace (on Environment deletion) removes them."""
    project_namespace: str

    @property
    def owned(self) -> bool:
        """Whether objects in the target namespace can carry an owner reference to it."""
        return self.target_namespace == self.environment_namespace


def place(namespace: str, labels: Mapping[str, Any] | None) -> Place:
    """The operator's places for an Environment in `namespace` with `labels`. One without
    the hierarchy labels is never reconciled by the operator; devjobs then keeps
    everything in the Environment's own namespace (as an installation that plays Catalyst
    itself does)."""
    found = hierarchy(labels)
    if found is None:
        return Place(namespace, namespace, namespace)
    return Place(namespace, found.target_namespace, found.project_namespace)


# --- deployment modes and the workload -----------------------------------------------

MODE_PRODUCTION = "production"
MODE_DEVELOPMENT = "development"
MODE_HELM = "helm"
MODE_COMPOSE = "docker-compose"
MODE_WORKSPACE = "workspace"
_PRODUCTION_TYPES = frozenset({"deployment", "staging", "production"})


def deployment_mode(explicit: str | None, environment_type: str, template_type: str | None) -> str:
    """The mode the operator reconciles in: `spec.deploymentMode` when set, else from
    the template's type (helm, docker-compose), else from `spec.type`."""
    if explicit:
        return explicit
    if template_type == "helm":
        return MODE_HELM
    if template_type == "docker-compose":
        return MODE_COMPOSE
    if environment_type == "development":
        return MODE_DEVELOPMENT
    if environment_type in _PRODUCTION_TYPES:
        return MODE_PRODUCTION
    return MODE_WORKSPACE


SUPPORTED_MODES = (MODE_PRODUCTION, MODE_DEVELOPMENT, MODE_HELM)
"""The modes in which the operator deploys an app that devjobs' points can follow."""
_UNSUPPORTED_WHY = {
    # compose_deploy.go
    MODE_COMPOSE: "the operator deploys each compose service without resource requests "
    "or limits, which its own ResourceQuota refuses, and replaces each Deployment on "
    "every reconcile",
    # reconcileWorkspaceMode
    MODE_WORKSPACE: "the operator runs one workspace pod and no app",
}


def unsupported_mode(mode: str) -> str | None:
    """Why devjobs runs no lifecycle jobs in `mode`, or None in a supported one. Any
    value the operator does not know is workspace mode to it."""
    if mode in SUPPORTED_MODES:
        return None
    known = mode if mode in _UNSUPPORTED_WHY else MODE_WORKSPACE
    return f"{known} mode: {_UNSUPPORTED_WHY[known]}"


def template_type(project: Mapping[str, Any] | None, environment_type: str) -> str | None:
    """`spec.templates[<environment type>].type` of a Project (helm, docker-compose, ...)."""
    templates = ((project or {}).get("spec") or {}).get("templates") or {}
    template = templates.get(environment_type) if isinstance(templates, Mapping) else None
    kind = template.get("type") if isinstance(template, Mapping) else None
    return kind if isinstance(kind, str) else None


def installation_id(project: Mapping[str, Any] | None) -> int | None:
    """`spec.githubInstallationId` of a Project (a string in Catalyst's CRD) as a
    positive int: the GitHub App installation that posts its check runs."""
    spec = (project or {}).get("spec")
    value = spec.get("githubInstallationId") if isinstance(spec, Mapping) else None
    text = str(value).strip() if isinstance(value, (str, int)) else ""
    return int(text) if text.isdigit() and int(text) > 0 else None


WORKLOAD_DEPLOYMENT = "web"
"""The Deployment (and Service, Ingress) the operator creates in every mode that has one."""
WORKLOAD_POD_LABEL = ("app", "web")
"""The label on the workload's pods (production and development mode)."""
SECRETS = "catalyst-secrets"
"""The Secret the operator gives the development-mode app with `envFrom`."""
GIT_SCRIPTS_CONFIGMAP = "catalyst-git-scripts"


@dataclass(frozen=True)
class Workload:
    """Where a mode runs the app: the Deployment, and its main container."""

    deployment: str
    container: str


def workload(mode: str) -> Workload:
    """Production: Deployment `web`, container `web`; development: container `app`.
    Helm charts are the user's; devjobs expects the same Deployment name there."""
    if mode == MODE_DEVELOPMENT:
        return Workload(WORKLOAD_DEPLOYMENT, "app")
    return Workload(WORKLOAD_DEPLOYMENT, "web")


# --- image builds ---------------------------------------------------------------------

BUILD_TYPE_LABEL = "catalyst.dev/job-type"
BUILD_TYPE = "build"
BUILD_NAME_LABEL = "catalyst.dev/build"
INSTALLATION_ID_LABEL = "catalyst.dev/installation-id"
"""On devjobs' Jobs that clone with Catalyst's credential helper: the Project's
`githubInstallationId` (the helper asks Catalyst's web app for a token by it)."""
REGISTRY = "registry.default.svc.cluster.local:5000"
"""Where build Jobs push (helm mode): `<registry>/<project>/<build>-<env>:<commit>`."""


def build_job_name(build: str, revision: str) -> str:
    """`build-<build>-<sha7>`, lower case, `/` and `.` made `-` (as `build_kaniko.go`
    names it; `revision` is the commit, else the branch, else `latest`, as for the tag)."""
    name = f"build-{build}-{revision[:7]}"
    return name.replace("/", "-").replace(".", "-").lower()


def build_image(project: str, build: str, environment: str, revision: str | None) -> str:
    """The image a build pushes: tagged with the commit, else the branch, else `latest`,
    with `/`, `:` and spaces made `-` as the operator does."""
    tag = (revision or "latest").replace("/", "-").replace(":", "-").replace(" ", "-")
    return f"{REGISTRY}/{project}/{build}-{environment}:{tag}"
