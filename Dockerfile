# syntax=docker/dockerfile:1
# The GPU PaaS portal's image: `web` (gunicorn) by default; `worker`, `pools-worker` and
# `migrate` are the other commands of bin/entrypoint. Build: docker build -t gpu-paas-portal .

# -- build: the dependencies in a virtual environment ------------------------------------
FROM python:3.12-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY portal portal
COPY profiles profiles
COPY pools pools
COPY services services
COPY workspaces workspaces
# Install the project to get its dependencies, then drop the project itself: the image
# runs the source from /app, where templates/ and static/ sit beside it.
RUN pip install . && pip uninstall -y gpu-paas-portal

# -- runtime -------------------------------------------------------------------------------
FROM python:3.12-slim AS runtime
RUN groupadd --system --gid 10001 portal \
    && useradd --system --uid 10001 --gid portal --home-dir /app --shell /usr/sbin/nologin portal
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORTAL_DATA_DIR=/var/lib/portal \
    PORTAL_STATIC_ROOT=/app/staticfiles \
    WEB_BIND=0.0.0.0:8000
WORKDIR /app
COPY --chown=root:root . /app
# Static files are collected at build time (whitenoise serves them); collectstatic needs
# settings, so it runs with a throw-away SQLite data directory.
RUN PORTAL_DATA_DIR=/tmp/build python manage.py collectstatic --noinput --verbosity 0 \
    && rm -rf /tmp/build \
    && mkdir -p /var/lib/portal \
    && chown portal:portal /var/lib/portal
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["/app/bin/entrypoint"]
CMD ["web"]
