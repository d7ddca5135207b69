# The llmd-rollout worker image: Python 3.11, the product (without clustersim, which only the demo
# and the tests run; .dockerignore leaves it out), and the pinned helm and kubectl.
# Built by docker-compose.yml (`docker compose build worker`); runs `python -m worker`, which reads
# a Temporal profile or TEMPORAL_* variables, LLMD_TASK_QUEUE, and KUBECONFIG for the cluster (or
# the pod's ServiceAccount when a spec sets target.inCluster).
# No secret is baked in: HF_TOKEN and the kubeconfig come from the container's environment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/app/.venv \
    PATH=/app/.venv/bin:$PATH

WORKDIR /app
RUN python -m venv /app/.venv

# helm and kubectl first: they change less often than the code, so this layer stays cached.
COPY scripts/install_tools.py scripts/install_tools.py
RUN python scripts/install_tools.py --venv /app/.venv && rm -rf /app/.venv/cache

COPY . .
# The worker runs from /app (python -m worker), and the workflow sandbox imports the workflow
# modules again for every workflow run. PYTHONDONTWRITEBYTECODE (and the chart's read-only root
# filesystem) keep Python from caching their bytecode, so each run compiled them from source
# again; compiled here once, they are read from __pycache__.
RUN pip install . && python -m compileall -q -x '/\.venv/' /app \
    && useradd --create-home --uid 10001 llmd

USER llmd
ENV KUBECONFIG=/etc/llmd/kubeconfig
# Prometheus metrics and /healthz, /readyz when LLMD_METRICS_PORT and LLMD_HEALTH_PORT say so
# (docker-compose.yml and the chart set these ports).
EXPOSE 9464 8081
CMD ["python", "-m", "worker"]
