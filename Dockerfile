# syntax=docker/dockerfile:1
# Production image of the Herald socket fleet (herald-socketsrv, the entrypoint) with the
# publisher CLI (herald-publish) and the Q&A core (herald-qa, with its live pages and the
# built browser client) beside it. Needs BuildKit (the default since Docker 23).
#
#   docker build -t herald .
#   docker run -p 8000:8000 -e REDIS_URL=... herald [--host 0.0.0.0 --port 8000 --workers 2]
#   docker run -p 8080:8080 -e REDIS_URL=... -e DATABASE_URL=... -e HERALD_QA_ENVIRONMENT=production \
#       -e HERALD_QA_HOST=0.0.0.0 ... --entrypoint herald-qa herald serve --workers 2
#
# tests/test_dockerfile.py lints this file and builds the same wheel as the builder stage.

FROM python:3.11-slim-bookworm AS builder

WORKDIR /src
COPY pyproject.toml README.md ./
COPY herald_contract ./herald_contract
COPY publisher ./publisher
COPY socketsrv ./socketsrv
COPY qasite ./qasite
COPY launch ./launch

# The project's wheel and a wheel of every pinned dependency, so the final stage installs
# offline from /wheels and needs no compiler.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[fleet,site]"


# The browser client the live pages import, built with its pinned toolchain (package-lock).
FROM node:20-bookworm-slim AS client

WORKDIR /src/client-js
COPY client-js/package.json client-js/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY client-js/tsconfig.json client-js/tsconfig.build.json ./
COPY client-js/src ./src
RUN npm run build


FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH="/opt/herald/bin:${PATH}" \
    HERALD_QA_CLIENT_DIST_DIR=/opt/herald/client-js-dist

# The wheels are bind-mounted from the builder, never copied, so no layer keeps them.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/herald \
    && /opt/herald/bin/pip install --no-cache-dir --no-index --find-links=/wheels "$(ls /wheels/herald-*.whl)[fleet,site]" \
    && groupadd --system --gid 10001 herald \
    && useradd --system --uid 10001 --gid herald --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin herald

COPY --from=client /src/client-js/dist /opt/herald/client-js-dist

USER 10001:10001

EXPOSE 8000 8080

# slim has no curl: python asks the worker's /healthz (urlopen raises on a non-2xx answer).
# The port is the one of the default CMD; a container run with another --port needs its own.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

ENTRYPOINT ["herald-socketsrv"]
CMD ["--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
