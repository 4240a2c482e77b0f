# The churnwatch worker image: `churnwatch worker`, `topics create`, `simulate --to kafka` ...
# Build: docker build -t churnwatch .   (docker compose builds it for every churnwatch service)

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/churnwatch
WORKDIR /src
# .dockerignore lets in only pyproject.toml, README.md, the packages and deploy/*.toml
COPY . .
# rocksdict (a dependency) is the store behind --store rocksdb://
RUN /opt/churnwatch/bin/pip install .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 churnwatch \
 && useradd --system --uid 10001 --gid churnwatch --home-dir /var/lib/churnwatch \
      --shell /usr/sbin/nologin churnwatch \
 && mkdir -p /var/lib/churnwatch /etc/churnwatch \
 && chown churnwatch:churnwatch /var/lib/churnwatch
COPY --from=build /opt/churnwatch /opt/churnwatch
COPY deploy/churnwatch.toml deploy/playbook.toml /etc/churnwatch/
ENV PATH=/opt/churnwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHURNWATCH_DATA_DIR=/var/lib/churnwatch
# state (RocksDB) lives under /var/lib/churnwatch: mount one volume per worker there
WORKDIR /var/lib/churnwatch
USER churnwatch:churnwatch
EXPOSE 9308
ENTRYPOINT ["churnwatch"]
CMD ["--help"]
