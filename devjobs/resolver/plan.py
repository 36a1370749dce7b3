"""From inputs to a `JobPlan`: read the resources, get each source's files, read each
devcontainer.json, merge with the Project's jobs. The only module that decides which
sources exist and where their files come from."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from devjobs.errors import DevjobsError
from devjobs.resolver.devcontainer import read_devcontainer
from devjobs.resolver.environment import Environment
from devjobs.resolver.merge import SETUP_JOBS, ProjectJob, SourceDefaults, merge_source
from devjobs.resolver.models import JobConfig, JobPlan, Origin, SkippedItem, SourceInfo, wire_name
from devjobs.resolver.project import Project, ProjectSource, read_resources
from devjobs.resolver.urls import check_url, redact, repo_basename

Target = Literal["local", "cluster"]

DEVCONTAINER_PATHS = (".devcontainer/", ".devcontainer.json")
"""What a plan needs from a repository (plus a chosen config path)."""


@dataclass(frozen=True)
class PlanRequest:
    project_file: Path | None = None
    environment_file: Path | None = None
    sources: Mapping[str, str] = field(default_factory=dict)
    """`--source NAME=DIR|URL`: a local directory or another URL for source NAME."""
    configs: Mapping[str, str] = field(default_factory=dict)
    """`--config NAME=PATH`: the devcontainer.json of source NAME, relative to its root."""
    target: Target = "cluster"
    local_env: Mapping[str, str] | None = None
    full_checkout: bool = False
    """Clone remote sources whole (a local run needs their files), not only devcontainer files."""
    cache_dir: Path | None = None
    project_object: Mapping[str, Any] | None = None
    """A Project as the API server returned it (the controller), instead of a file."""
    environment_object: Mapping[str, Any] | None = None
    """An Environment as the API server returned it, instead of a file."""


@dataclass(frozen=True)
class ResolvedPlan:
    plan: JobPlan
    checkouts: dict[str, Path]
    """Source name -> the local directory its files were read from."""


@dataclass(frozen=True)
class _Source:
    """A source to plan, before its files are fetched."""

    name: str
    spec: ProjectSource | None
    index: int | None
    url: str | None
    local_dir: Path | None
    branch: str | None
    commit: str | None
    config: str | None
    devcontainer_enabled: bool
    url_place: str
    url_from_command_line: bool
    """file:// is accepted only from the command line: a CR must not read local disks."""


def resolve(request: PlanRequest) -> ResolvedPlan:
    """The whole resolution; raises DevjobsError with a place for any invalid input."""
    resources = read_resources(
        request.project_file,
        request.environment_file,
        project_object=request.project_object,
        environment_object=request.environment_object,
    )
    project, environment = resources.project, resources.environment
    if project is None and not request.sources:
        raise DevjobsError("", "nothing to plan: give a Project file or --source NAME=DIR")
    if environment is not None and project is not None:
        _check_environment(project, environment)
    sources = _sources(request, project, environment)
    checkouts, commits = _materialise(sources, request)

    jobs: list[JobConfig] = []
    skipped: list[SkippedItem] = []
    warnings: list[str] = []
    infos: list[SourceInfo] = []
    for source in sources:
        checkout = checkouts[source.name]
        basename = source.local_dir.name if source.local_dir else repo_basename(source.url or "")
        devcontainer = None
        if source.devcontainer_enabled:
            devcontainer = read_devcontainer(
                checkout,
                source=source.name,
                basename=basename,
                config=source.config,
                target=request.target,
                local_env=request.local_env,
            )
        elif source.index is not None:
            skipped.append(
                SkippedItem(
                    source=source.name,
                    pointer=f"/spec/sources/{source.index}/devcontainer",
                    file=project.document.file if project else None,
                    reason="devcontainer.json disabled by the Project (enabled: false)",
                )
            )
        if devcontainer is not None:
            skipped.extend(
                item if item.file else replace(item, file=devcontainer.file)
                for item in devcontainer.skipped
            )
            warnings.extend(devcontainer.warnings)
            setup = [job.name for job in devcontainer.jobs if job.name in SETUP_JOBS]
            defaults = SourceDefaults(devcontainer.working_dir, setup, devcontainer.image)
            base_jobs = devcontainer.jobs
        else:
            defaults = SourceDefaults(f"/workspaces/{basename}")
            base_jobs = []
        merged = merge_source(source.name, base_jobs, _project_jobs(project, source), defaults)
        jobs.extend(merged.jobs)
        skipped.extend(merged.skipped)
        warnings.extend(merged.warnings)
        infos.append(
            SourceInfo(
                name=source.name,
                repository_url=source.url,
                branch=source.branch,
                commit_sha=commits.get(source.name),
                devcontainer_file=devcontainer.file if devcontainer else None,
                local_path=str(source.local_dir) if source.local_dir else None,
            )
        )
    plan = JobPlan(sources=infos, jobs=jobs, skipped=skipped, warnings=warnings)
    return ResolvedPlan(plan, checkouts)


def _check_environment(project: Project, environment: Environment) -> None:
    if environment.project and environment.project != project.name:
        raise DevjobsError(
            environment.where("/spec/projectRef/name"),
            f"Environment belongs to Project {environment.project!r}, not {project.name!r}",
        )
    known = {source.name for source in project.sources}
    for index, pinned in enumerate(environment.sources):
        if pinned.name not in known:
            raise DevjobsError(
                environment.where(f"/spec/sources/{index}/name"),
                f"no source {pinned.name!r} in Project {project.name!r}",
            )


def _sources(
    request: PlanRequest, project: Project | None, environment: Environment | None
) -> list[_Source]:
    pins = {pinned.name: pinned for pinned in (environment.sources if environment else [])}
    overrides = dict(request.sources)
    result: list[_Source] = []
    for index, spec in enumerate(project.sources if project else []):
        assert project is not None
        pointer = f"/spec/sources/{index}"
        pin = pins.get(spec.name)
        override = overrides.pop(spec.name, None)
        url: str | None = spec.repository_url
        local_dir: Path | None = None
        place = project.document.where(f"{pointer}/repositoryUrl")
        if override is not None:
            override_url, local_dir, place = _override_location(spec.name, override)
            # A local directory previews uncommitted work; cluster jobs still clone the
            # Project's repository, so keep its URL.
            url = override_url if local_dir is None else url
        result.append(
            _Source(
                name=spec.name,
                spec=spec,
                index=index,
                url=url,
                local_dir=local_dir,
                branch=(pin.branch if pin and pin.branch else spec.branch),
                commit=pin.pinned_commit if pin else None,
                config=request.configs.get(spec.name) or spec.devcontainer.path,
                devcontainer_enabled=spec.devcontainer.enabled,
                url_place=place,
                url_from_command_line=override is not None,
            )
        )
    for name, location in overrides.items():
        added_url, added_dir, place = _override_location(name, location)
        result.append(
            _Source(
                name=name,
                spec=None,
                index=None,
                url=added_url,
                local_dir=added_dir,
                branch=None,
                commit=None,
                config=request.configs.get(name),
                devcontainer_enabled=True,
                url_place=place,
                url_from_command_line=True,
            )
        )
    names = {source.name for source in result}
    for name in request.configs:
        if name not in names:
            raise DevjobsError(f"--config {name}=...", f"no source named {name!r}")
    return result


def _override_location(name: str, location: str) -> tuple[str | None, Path | None, str]:
    """`--source NAME=DIR|URL`: an existing directory, else a URL (file:// allowed here)."""
    place = f"--source {name}=..."
    path = Path(location).expanduser()
    if "://" not in location and path.is_dir():
        return _origin_url(path), path.resolve(), place
    if (
        "://" not in location
        and ("/" in location or location.startswith("."))
        and ":" not in location
    ):
        raise DevjobsError(place, f"{location}: no such directory")
    return check_url(location, place=place, allow_file=True), None, place


def _origin_url(path: Path) -> str | None:
    """The `origin` remote of a local checkout, so cluster jobs can clone it too."""
    try:
        result = subprocess.run(
            ["git", "-C", str(path), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    url = result.stdout.strip()
    return redact(url) if url else None


def _materialise(
    sources: list[_Source], request: PlanRequest
) -> tuple[dict[str, Path], dict[str, str]]:
    """Local directories for every source; remote ones are fetched in parallel."""
    checkouts: dict[str, Path] = {}
    commits: dict[str, str] = {}
    remote = []
    for source in sources:
        if source.local_dir is not None:
            checkouts[source.name] = source.local_dir
            continue
        assert source.url is not None
        remote.append(source)
    if not remote:
        return checkouts, commits
    # GitPython is imported only when something must be fetched.
    from devjobs.resolver.git import FetchRequest, fetch_sources

    requests = []
    for source in remote:
        allow_file = source.url_from_command_line
        url = check_url(source.url or "", place=source.url_place, allow_file=allow_file)
        paths: tuple[str, ...] = () if request.full_checkout else DEVCONTAINER_PATHS
        if source.config and not request.full_checkout:
            paths = (*paths, source.config)
        requests.append(
            FetchRequest(
                source=source.name,
                url=url,
                branch=source.branch,
                commit=source.commit,
                paths=paths,
                place=source.url_place,
                allow_file=allow_file,
            )
        )
    for name, checkout in fetch_sources(requests, cache_dir=request.cache_dir).items():
        checkouts[name] = checkout.path
        commits[name] = checkout.commit
    return checkouts, commits


def _project_jobs(project: Project | None, source: _Source) -> list[ProjectJob]:
    if project is None or source.spec is None or source.index is None:
        return []
    document = project.document
    result = []
    for index, spec in enumerate(source.spec.jobs):
        pointer = f"/spec/sources/{source.index}/jobs/{index}"
        result.append(
            ProjectJob(
                spec=spec,
                origin=Origin(kind="project", file=document.file, pointer=pointer),
                where=_where(document.where, pointer),
            )
        )
    return result


def _where(where: Callable[[str], str], pointer: str) -> Callable[[str], str]:
    def place(field_name: str) -> str:
        return where(f"{pointer}/{wire_name(field_name)}" if field_name else pointer)

    return place
