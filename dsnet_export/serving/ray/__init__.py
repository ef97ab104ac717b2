"""A bundle behind Ray Serve: ``build_app(bundle_dir, replicas=..., ...)`` gives the application (an ingress,
the gate and one deployment per route, batching each route across requests); ``serve.run`` starts it.

Ray is imported when ``build_app`` is called, not when this package is.
"""

from .app import (
    APP_NAME,
    GateServer,
    Ingress,
    RouteServer,
    build_app,
    check_images,
    decode_body,
    deployment_key,
    resolve_replicas,
    resolve_resources,
)

__all__ = ["APP_NAME", "GateServer", "Ingress", "RouteServer", "build_app", "check_images", "decode_body",
           "deployment_key", "resolve_replicas", "resolve_resources"]
