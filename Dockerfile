# syntax=docker/dockerfile:1
# Production images of Herald, two targets from one build (needs BuildKit, the default since
# Docker 23):
#
#   fleet (the default, last stage): the socket fleet, herald-socketsrv, with the publisher
#         CLI (herald-publish); installs the `fleet` extra only, none of the Q&A site's
#         dependencies (FastAPI, SQLAlchemy, Pillow, argon2, ...).
#   site: the Q&A site, herald-qa, with its live pages and the built browser client;
#         installs the `site` extra only.
#
#   docker build -t herald .                    # the fleet
#   docker build --target site -t herald-qa .   # the Q&A site
#   docker run -p 8000:8000 -e REDIS_URL=... herald [--host 0.0.0.0 --port 8000 --workers 2]
#   docker run -p 8080:8080 -e REDIS_URL=... -e DATABASE_URL=... -e HERALD_QA_ENVIRONMENT=production \
#       -e HERALD_QA_HOST=0.0.0.0 ... herald-qa serve --workers 2
#
# tests/test_dockerfile.py lints this file and builds the same wheels as the builder stage.

FROM python:3.11-slim-bookworm AS builder

WORKDIR /src
COPY pyproject.toml README.md ./
COPY herald_contract ./herald_contract
COPY publisher ./publisher
COPY socketsrv ./socketsrv
COPY qasite ./qasite
COPY launch ./launch

# The project's wheel and a wheel of every pinned dependency of each target, so the final
# stages install offline from /wheels/<target> and need no compiler.
RUN pip wheel --no-cache-dir --wheel-dir /wheels/fleet ".[fleet]" \
    && pip wheel --no-cache-dir --wheel-dir /wheels/site ".[site]"


# The browser client the live pages import, built with its pinned toolchain (package-lock).
FROM node:20-bookworm-slim AS client

WORKDIR /src/client-js
COPY client-js/package.json client-js/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY client-js/tsconfig.json client-js/tsconfig.build.json ./
COPY client-js/src ./src
RUN npm run build


# What both images share: a venv on the PATH and an unprivileged user.
FROM python:3.11-slim-bookworm AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH="/opt/herald/bin:${PATH}"

RUN python -m venv /opt/herald \
    && groupadd --system --gid 10001 herald \
    && useradd --system --uid 10001 --gid herald --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin herald \
    && install -d -o 10001 -g 10001 /var/lib/herald

# The working directory is the unprivileged user's own: the Q&A site's data directory
# (HERALD_QA_DATA_DIR, default .herald-data: development keys, SQLite, uploads) lands here,
# never under /. Mount a volume on /var/lib/herald to keep it.
WORKDIR /var/lib/herald


FROM runtime AS site

ENV HERALD_QA_CLIENT_DIST_DIR=/opt/herald/client-js-dist

# The wheels are bind-mounted from the builder, never copied, so no layer keeps them.
RUN --mount=type=bind,from=builder,source=/wheels/site,target=/wheels \
    /opt/herald/bin/pip install --no-cache-dir --no-index --find-links=/wheels \
        "$(ls /wheels/herald-*.whl)[site]"

COPY --from=client /src/client-js/dist /opt/herald/client-js-dist

USER 10001:10001

EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]

ENTRYPOINT ["herald-qa"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]


FROM runtime AS fleet

RUN --mount=type=bind,from=builder,source=/wheels/fleet,target=/wheels \
    /opt/herald/bin/pip install --no-cache-dir --no-index --find-links=/wheels \
        "$(ls /wheels/herald-*.whl)[fleet]"

USER 10001:10001

EXPOSE 8000

# slim has no curl: python asks the worker's /healthz (urlopen raises on a non-2xx answer).
# The port is the one of the default CMD; a container run with another --port needs its own.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

ENTRYPOINT ["herald-socketsrv"]
CMD ["--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
