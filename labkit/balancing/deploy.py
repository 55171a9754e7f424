"""The same topology at more than one machine: nginx, Docker Compose, Kubernetes.

A cluster on one laptop has one balancer, N servers and maybe a store. These
functions write that topology in the formats a team would deploy it with. They are
shown in the chapter and checked by tests that parse them; they are not run here
(the course has one machine), except the nginx file, which ``nginx -t`` accepts
and tests/balancing/test_engine_haproxy.py runs. For a ``cluster``::

    print(nginx_config(cluster))          # open-source nginx, with its limits
    print(compose_file(cluster))          # docker compose up
    print(kubernetes_manifests(cluster))  # kubectl apply -f -

What changes at more than one machine is named in the comments of each file:
servers find each other by DNS names instead of ports, health checks become
readiness probes, and a crash is a pod or container restart, not a ``kill()``.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import EngineError
from .haproxy import DIRECTIVES, policy_name
from .policies import STICKY_COOKIE

APP_PORT = 8000          # where gunicorn listens inside a container
IMAGE = "python:3.11-slim"
GUNICORN = "gunicorn --worker-class gthread --workers 1 --threads {threads} --bind 0.0.0.0:8000 app:app"

_NGINX = {
    "round_robin": ("", "round robin (nginx's default)"),
    "least_connections": ("least_conn;", "fewest active connections"),
    "hash": ("hash $http_x_client_id consistent;", "consistent hash of X-Client-Id"),
    # Open-source nginx has no cookie-insert stickiness (that is NGINX Plus's
    # `sticky cookie`). A cookie nginx sets itself *before* the app sees the client,
    # hashed consistently, pins a client from its first request on.
    "sticky": ("hash $lk_route consistent;", "consistent hash of a routing cookie nginx sets"),
}
ROUTE_COOKIE = "LKROUTE"


class _Dumper(yaml.SafeDumper):
    """Plain YAML: repeated dicts are written out again, not as &anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _servers(cluster: Any) -> list[str]:
    return [server.name for server in cluster.servers]


def nginx_config(cluster: Any, *, port: int = 8080) -> str:
    """An open-source nginx config for ``cluster``'s policy, with its limits stated.

    The upstream addresses are the live servers' ports on 127.0.0.1, so the file
    runs as is on this machine (``nginx -t -c FILE`` accepts it).
    """
    policy = policy_name(cluster.policy)
    directive, what = _NGINX[policy]
    lines = [
        f"# nginx (open source) in front of {len(cluster.servers)} servers: {what}.",
        "# Limits compared with HAProxy: health checks are passive only (a server is",
        "# skipped after max_fails errors for fail_timeout). A request is passed to the",
        "# next server on an error or timeout; a POST, LOCK or PATCH only if it had not",
        "# been sent yet (the connection failed), unless `proxy_next_upstream ...",
        "# non_idempotent` allows it. proxy_next_upstream_tries 2 counts the first try.",
    ]
    if policy == "sticky":
        lines += [
            "# Stickiness without NGINX Plus: nginx gives each new client a random routing",
            f"# cookie {ROUTE_COOKIE} ($request_id) and hashes it, so the first request,",
            "# the login, already lands where the later ones will. When a server dies its",
            "# clients move to the next one on the ring, and move back when it returns",
            "# (HAProxy's inserted cookie keeps the new pin instead).",
        ]
    lines += [
        "worker_processes 1;",
        "pid nginx.pid;",
        "error_log stderr;",
        "events { worker_connections 256; }",
        "http {",
        "    access_log off;",
    ]
    if policy == "sticky":
        lines += [
            f"    map $cookie_{ROUTE_COOKIE} $lk_route {{",
            "        \"\"      $request_id;",
            f"        default $cookie_{ROUTE_COOKIE};",
            "    }",
        ]
    lines += ["    upstream app {"]
    if directive:
        lines.append(f"        {directive}")
    for server in cluster.servers:
        lines.append(f"        server 127.0.0.1:{server.port} max_fails=1 fail_timeout=1s;"
                     f"  # {server.name}")
    lines += [
        "    }",
        "    server {",
        f"        listen 127.0.0.1:{port};",
        "        location /__labkit__/ { return 404; }",
        "        location / {",
        "            proxy_pass http://app;",
        "            proxy_set_header X-Forwarded-For $remote_addr;",
        "            proxy_next_upstream error timeout;",
        "            proxy_next_upstream_tries 2;",
    ]
    if policy == "sticky":
        # `always`: without it nginx adds the header only to 2xx and 3xx answers, and a
        # client whose first answer is a 401 would be routed at random again.
        lines.append(f"            add_header Set-Cookie \"{ROUTE_COOKIE}=$lk_route; Path=/;"
                     " HttpOnly; SameSite=Lax\" always;")
    lines += ["        }", "    }", "}"]
    return "\n".join(lines) + "\n"


def compose_file(cluster: Any, *, store: bool = False) -> str:
    """A Docker Compose file: HAProxy, one service per server, Redis if ``store``."""
    policy = policy_name(cluster.policy)
    threads = cluster.servers[0].workers or 16
    services: dict[str, Any] = {}
    for name in _servers(cluster):
        services[name] = {
            "image": IMAGE,
            "working_dir": "/app",
            "volumes": ["./app:/app:ro"],
            "command": f"sh -c 'pip install -q -r requirements.txt && "
                       f"{GUNICORN.format(threads=threads)}'",
            "environment": {"SERVER_NAME": name}
                           | ({"REDIS_URL": "redis://redis:6379/0"} if store else {}),
            "healthcheck": {"test": ["CMD", "python", "-c",
                                     "import urllib.request as u; u.urlopen("
                                     "'http://localhost:8000/__labkit__/ready')"],
                            "interval": "2s", "retries": 1},
            "restart": "unless-stopped",   # a crash is a container restart here
        }
        if store:
            services[name]["depends_on"] = ["redis"]
    services["balancer"] = {
        "image": "haproxy:2.6",
        "ports": ["8080:8080"],
        "volumes": ["./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"],
        "depends_on": _servers(cluster),
        "labels": {"labkit.policy": policy},
    }
    if store:
        services["redis"] = {"image": "redis:7", "command": "redis-server --appendonly yes "
                             "--appendfsync everysec"}
    header = ("# docker compose up: the cluster at one host, each server its own container.\n"
              "# haproxy.cfg is cluster.haproxy_config(), with `bind :8080` and the servers\n"
              f"# addressed by their service names ({', '.join(_servers(cluster))}:{APP_PORT}).\n"
              "# `restart` revives a server whose process exits; the healthcheck only marks\n"
              "# it unhealthy (HAProxy's own checks decide where requests go).\n")
    return header + yaml.dump({"services": services}, Dumper=_Dumper, sort_keys=False)


def kubernetes_manifests(cluster: Any, *, store: bool = False) -> str:
    """Kubernetes manifests: a Deployment, a Service, an Ingress, Redis if ``store``.

    The N servers become N replicas of one Deployment. Stickiness is the ingress
    controller's job (ingress-nginx: ``affinity: cookie``); ``hash`` maps to its
    ``upstream-hash-by``, the other policies to its ``load-balance`` annotation.
    ingress-nginx has no least-connections: ``ewma`` (peak EWMA: the faster of two
    random endpoints by a decaying average of response times) is its closest. The
    community ingress-nginx controller was retired in March 2026 (no more releases
    or security fixes); on a new cluster a Gateway API implementation takes its
    place, with other names for the same ideas. Pods get no names like ``s1``: a
    dead pod is replaced by a new one with a new name and an empty memory. A failing
    readiness probe takes a pod out of the Service; it does not restart it.
    """
    policy = policy_name(cluster.policy)
    size = len(cluster.servers)
    labels = {"app": "labkit-app"}
    env = [{"name": "REDIS_URL", "value": "redis://redis:6379/0"}] if store else []
    docs: list[dict[str, Any]] = [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "labkit-app"},
         "spec": {"replicas": size, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                      "name": "app", "image": "labkit-app:latest",
                      "command": ["sh", "-c", GUNICORN.format(
                          threads=cluster.servers[0].workers or 16)],
                      "ports": [{"containerPort": APP_PORT}],
                      "env": env,
                      "readinessProbe": {"httpGet": {"path": "/__labkit__/ready",
                                                     "port": APP_PORT},
                                         "periodSeconds": 1, "failureThreshold": 1},
                  }]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "labkit-app"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": APP_PORT}]}},
    ]
    annotations = {"nginx.ingress.kubernetes.io/load-balance":
                   {"least_connections": "ewma"}.get(policy, "round_robin")}
    if policy == "sticky":
        annotations = {"nginx.ingress.kubernetes.io/affinity": "cookie",
                       "nginx.ingress.kubernetes.io/session-cookie-name": STICKY_COOKIE}
    elif policy == "hash":
        annotations = {"nginx.ingress.kubernetes.io/upstream-hash-by": "$http_x_client_id"}
    docs.append({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "labkit-app", "annotations": annotations},
        "spec": {"ingressClassName": "nginx", "rules": [{"http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "labkit-app", "port": {"number": 80}}}}]}}]},
    })
    if store:
        redis_labels = {"app": "redis"}
        docs += [
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "redis"},
             "spec": {"replicas": 1, "selector": {"matchLabels": redis_labels},
                      "template": {"metadata": {"labels": redis_labels}, "spec": {
                          "containers": [{"name": "redis", "image": "redis:7",
                                          "ports": [{"containerPort": 6379}]}]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis"},
             "spec": {"selector": redis_labels, "ports": [{"port": 6379}]}},
        ]
    return ("# kubectl apply -f -: the cluster at many machines (not run by the course).\n"
            + yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False))


def policy_of_manifests(text: str) -> str:
    """Read back which kit policy a :func:`kubernetes_manifests` text implements."""
    for doc in yaml.safe_load_all(text):
        if doc and doc.get("kind") == "Ingress":
            notes = doc["metadata"].get("annotations", {})
            if notes.get("nginx.ingress.kubernetes.io/affinity") == "cookie":
                return "sticky"
            if "nginx.ingress.kubernetes.io/upstream-hash-by" in notes:
                return "hash"
            return {"ewma": "least_connections"}.get(
                notes.get("nginx.ingress.kubernetes.io/load-balance"), "round_robin")
    raise EngineError("These manifests have no Ingress; they were not written by the kit.")


__all__ = ["DIRECTIVES", "compose_file", "kubernetes_manifests", "nginx_config",
           "policy_of_manifests"]
