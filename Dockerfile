# Sentinel's code-location image for the production profile: the webserver, the daemon and
# the Celery workers all run this one image (deploy/compose.yaml), with different commands.
# Not built or run on the development machines (they have no container engine); see README,
# "Production profile" > "Deployment".
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    SENTINEL_HOME=/data

WORKDIR /opt/sentinel

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY sentinel_assets ./sentinel_assets
RUN pip install '.[production]'

COPY workspace.yaml ./
COPY deploy/production/celery.yaml ./deploy/production/celery.yaml
# The production instance (PostgreSQL storage, run queue, pools): every setting in it is read
# from the environment when the instance loads, so the image holds no secret.
COPY deploy/production/dagster.yaml ${DAGSTER_HOME}/dagster.yaml

RUN useradd --uid 10001 --create-home sentinel \
    && mkdir -p /data \
    && chown -R sentinel /data ${DAGSTER_HOME}
USER sentinel
VOLUME ["/data"]
EXPOSE 3000

CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "workspace.yaml"]
