# syntax=docker/dockerfile:1
# Multi-stage build: compile the Cython core into a wheel, then install it into a slim
# runtime image that runs as a non-root user.

FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY fastgw ./fastgw
COPY fastgw_core ./fastgw_core
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
RUN useradd --system --uid 10001 --home-dir /srv/fastgw --create-home fastgw
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && python -c "import fastgw_core, sys; sys.exit(0 if all(fastgw_core.COMPILED.values()) else 1)"
RUN mkdir -p /etc/fastgw /var/lib/fastgw && chown fastgw /var/lib/fastgw
USER fastgw
# Keys, usage plans and usage (the embedded backend's SQLite file) and the generated admin
# token live in /var/lib/fastgw: mount a volume there to keep them across containers.
VOLUME /var/lib/fastgw
# Mount your config at /etc/fastgw/fastgw.yaml (found as ./fastgw.yaml); without one the
# demo API is served.
WORKDIR /etc/fastgw
EXPOSE 8080
# The admin API stays on the container's loopback (127.0.0.1:9001): `docker exec` the CLI, or
# set gateway.admin.listen and an explicit token (FASTGW_ADMIN_TOKEN) to publish it.
ENTRYPOINT ["fastgw", "run", "--pid-file", "/tmp/fastgw.pid", "--listen", "0.0.0.0:8080", \
            "--state", "/var/lib/fastgw/fastgw-state.db"]
