"""First start: register the bundled demo model and deploy it on this node, so the gateway answers at once."""

from __future__ import annotations

import logging

from django.conf import settings

from controlplane.models import Deployment, ModelVersion, Node

from . import audit
from .deployments import create_deployment
from .registry import register_model_version

logger = logging.getLogger(__name__)

DEMO_NAME, DEMO_VERSION = "demo", "v1"


def demo_artifact():
    return settings.BASE_DIR / "inference" / "demo" / "moe-demo-v1"


def bootstrap_demo(node: Node) -> Deployment | None:
    """Deploy the demo model when no deployment exists yet (and ``DEMO_BOOTSTRAP`` is on)."""
    if not settings.DEMO_BOOTSTRAP or Deployment.objects.exists():
        return None
    path = demo_artifact()
    if not (path / "config.json").exists():
        logger.warning("the bundled demo model is missing at %s; nothing deployed", path)
        return None
    version = ModelVersion.objects.filter(name=DEMO_NAME, version=DEMO_VERSION).first()
    if version is None:
        version = register_model_version(
            audit.SYSTEM,
            name=DEMO_NAME,
            version=DEMO_VERSION,
            artifact_path=str(path),
            description="The bundled demo model.",
        )
    deployment = create_deployment(
        audit.SYSTEM, name=DEMO_NAME, model_version=version, node=node, comment="deployed on first start"
    )
    logger.info("deployed the bundled demo model as %r", deployment.name)
    return deployment
