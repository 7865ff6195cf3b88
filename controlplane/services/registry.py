"""Registering model versions: the artifact is checked, measured and hashed by the server, never taken on trust."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from controlplane.choices import ModelFormat, ModelStatus
from controlplane.models import ModelVersion
from inference.artifacts import artifact_digest, count_parameters, file_sha256, read_model_config

from . import audit
from .errors import Conflict, InvalidInput
from .golden import import_from_artifact

__all__ = [
    "delete_model_version",
    "register_model_version",
    "resolve_artifact_path",
    "update_model_version",
    "verify_manifest",
]

EDITABLE_FIELDS = ("status", "description", "baseline_quality")
MANIFEST = "manifest.json"  # a native checkpoint's sha256 of every other file (inference/checkpoint.py)


def shown(text: str) -> str:
    """``text`` with every server path made relative to its model directory (or to the project), so that error
    messages name the artifact's files without telling where the server keeps them."""
    roots = sorted((str(root) for root in settings.MODEL_DIRS), key=len, reverse=True)
    for root in roots:
        text = text.replace(root + "/", "").replace(root, ".")
    return text.replace(str(settings.BASE_DIR) + "/", "")


def _artifact_error(message: str) -> InvalidInput:
    return InvalidInput.field("artifact_path", shown(message))


def resolve_artifact_path(raw: str) -> Path:
    """The real path of ``raw`` (relative paths are taken from the project root), inside an allowed model directory."""
    if not raw or "\x00" in raw:
        raise InvalidInput.field("artifact_path", "must be a path")
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = settings.BASE_DIR / path
    path = path.resolve()
    allowed = settings.MODEL_DIRS
    if not any(path.is_relative_to(root) for root in allowed):
        raise InvalidInput.field("artifact_path", "is outside the model directories (MODEL_DIRS)")
    if not path.exists():
        raise _artifact_error(f"{path} does not exist")
    return path


def verify_manifest(path: Path) -> dict[str, str]:
    """Check every file a checkpoint's ``manifest.json`` lists against its sha256 (what the worker checks before it
    loads), so a corrupted artifact is refused at registration instead of failing its first worker. Returns the
    verified digests by relative path (reused for the artifact's digest); an artifact without a manifest (a single
    file, a Hugging Face directory) has nothing to verify here."""
    manifest = path / MANIFEST
    if not path.is_dir() or not manifest.is_file():
        return {}
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise _artifact_error(f"{MANIFEST} is not a valid manifest ({exc})") from None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise InvalidInput.field("artifact_path", f'{MANIFEST}: "files" must map file names to sha256 strings')
    verified: dict[str, str] = {}
    for name, expected in sorted(files.items()):
        file = (path / name).resolve()
        if not file.is_relative_to(path) or not file.is_file():
            raise InvalidInput.field("artifact_path", f"{name} is listed in {MANIFEST} but missing")
        actual = file_sha256(file)
        if actual != expected.lower():
            raise InvalidInput.field(
                "artifact_path", f"{name} does not match {MANIFEST}: sha256 {actual}, the manifest says {expected}"
            )
        verified[file.relative_to(path).as_posix()] = actual
    return verified


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def register_model_version(
    actor: audit.Actor,
    *,
    name: str,
    version: str,
    artifact_path: str,
    precision: str | None = None,
    format: str | None = None,
    baseline_quality: float | None = None,
    description: str = "",
    status: str = ModelStatus.REGISTERED,
    sha256: str | None = None,
) -> ModelVersion:
    """Check the artifact, read its config, count parameters, measure size and sha256, then record the version.

    ``sha256``, when given, must match what the server computes (release tooling can pin what it built).
    """
    if ModelVersion.objects.filter(name=name, version=version).exists():
        raise InvalidInput.field("version", f"{name}:{version} is already registered")
    path = resolve_artifact_path(artifact_path)
    try:
        arch = read_model_config(path)
        parameters = count_parameters(path)
    except (ValueError, OSError, KeyError) as exc:
        raise _artifact_error(f"is not a readable model checkpoint: {exc}") from None
    if format and format != arch["format"]:
        raise InvalidInput.field("format", f"is {format!r} but the artifact is a {arch['format']!r} checkpoint")
    if parameters < 1:
        raise InvalidInput.field("artifact_path", "holds no weights (no tensors in its safetensors files)")
    digest = artifact_digest(path, known=verify_manifest(path))
    if sha256 and sha256.lower() != digest:
        raise InvalidInput.field("sha256", f"does not match the artifact: expected {sha256}, computed {digest}")
    quality = arch.pop("quality", {}) or {}
    if baseline_quality is None:
        baseline_quality = quality.get("heldout_perplexity")
    try:
        with transaction.atomic():
            model_version = ModelVersion.objects.create(
                name=name,
                version=version,
                format=arch["format"] or ModelFormat.MOE,
                artifact_path=str(path),
                precision=precision or "fp32",
                parameter_count=parameters,
                size_bytes=_size(path),
                sha256=digest,
                architecture={**arch, "quality": quality},
                baseline_quality=baseline_quality,
                description=description,
                status=status,
                created_by=actor.user,
            )
            audit.record(actor, "model_version.create", model_version, after=audit.snapshot(model_version))
            import_from_artifact(actor, model_version)
    except IntegrityError:
        raise InvalidInput.field("version", f"{name}:{version} is already registered") from None
    return model_version


def update_model_version(actor: audit.Actor, model_version: ModelVersion, **changes) -> ModelVersion:
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput({key: ["cannot be changed after registration"] for key in sorted(unknown)})
    with transaction.atomic():
        before = audit.snapshot(model_version)
        for key, value in changes.items():
            setattr(model_version, key, value)
        model_version.save(update_fields=list(changes) or None)
        audit.record(actor, "model_version.update", model_version, before=before, after=audit.snapshot(model_version))
    return model_version


def delete_model_version(actor: audit.Actor, model_version: ModelVersion) -> None:
    used = model_version.revisions.select_related("deployment").first()
    if used is not None:
        raise Conflict(
            f"{model_version} is used by deployment {used.deployment.name} (revision {used.number}); "
            "deprecate it instead, so the history stays whole"
        )
    with transaction.atomic():
        audit.record(actor, "model_version.delete", model_version, before=audit.snapshot(model_version))
        model_version.delete()
