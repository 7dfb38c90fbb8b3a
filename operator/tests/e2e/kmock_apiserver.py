"""A Kubernetes API emulator for the operator's end-to-end test (PyPI `kmock`).

Usage: python kmock_apiserver.py PORT_FILE

Starts kmock's in-memory KubernetesEmulator on 127.0.0.1 with a free port, writes the port to
PORT_FILE once listening, and serves until killed. Two gaps of the emulator are filled here:

* server-side apply (PATCH with application/apply-patch+yaml) of an object that does not exist
  yet creates it, as a real API server does (kmock answers 404);
* the resources the operator uses are declared, so discovery, lists and watches work;
* every write stamps `metadata.resourceVersion` (kube's watcher needs one on every event), and
  errors carry the reasons a real API server uses (`NotFound`, `Conflict`, ...), which clients
  match on.

Everything else (merge-only patches, no resourceVersion/uid/generation bookkeeping, no
garbage collection, no controllers) stays as kmock does it; the Rust test says which paths
these simplifications leave to the mocked-client scenarios.
"""

import asyncio
import itertools
import os
import sys

import aiohttp.web
import kmock

REASONS = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 409: "Conflict", 422: "Invalid"}

RESOURCES = [
    "auralguard.io/v1alpha1/audiodetectors",
    "apps/v1/deployments",
    "v1/services",
    "v1/pods",
    "v1/secrets",
    "autoscaling/v2/horizontalpodautoscalers",
    "policy/v1/poddisruptionbudgets",
    "events.k8s.io/v1/events",
    "coordination.k8s.io/v1/leases",
]


class ApplyCreatesEmulator(kmock.KubernetesEmulator):
    _versions = itertools.count(1)

    async def _render_error(self, exc):
        if isinstance(exc, kmock.KubernetesError) and exc.status in REASONS:
            return aiohttp.web.json_response(
                {
                    "apiVersion": "v1",
                    "kind": "Status",
                    "metadata": {},
                    "code": exc.status,
                    "status": "Failure",
                    "reason": REASONS[exc.status],
                    "message": exc.message or REASONS[exc.status],
                },
                status=exc.status,
            )
        return await super()._render_error(exc)

    async def _handle(self, request):
        writes = (kmock.action.CREATE, kmock.action.UPDATE)
        if request.resource is not None and request.action in writes and isinstance(request.data, dict):
            request.data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        if (
            request.resource is not None
            and request.action == kmock.action.UPDATE
            and request.name is not None
            and not getattr(request, "subresource", None)
        ):
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                missing = key not in self._objects or self._objects[key].deleted
                if missing:
                    data = dict(request.data or {})
                    meta = dict(data.get("metadata") or {})
                    meta.setdefault("name", request.name)
                    if request.namespace:
                        meta.setdefault("namespace", request.namespace)
                    data["metadata"] = meta
                    if key in self._objects:
                        self._objects[key].create(data)
                    else:
                        self._objects[key] = data
                    raw = self._objects[key].raw
                    await self._buses[request.resource].put({"type": "ADDED", "object": raw})
        return await super()._handle(request)


async def main(port_file: str) -> None:
    async with ApplyCreatesEmulator() as k8s, kmock.Server(k8s) as server:
        for resource in RESOURCES:
            k8s.resources[resource] = {}
        with open(port_file + ".tmp", "w") as f:
            f.write(str(server.port))
        os.replace(port_file + ".tmp", port_file)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
