FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends wireguard-go wireguard-tools iproute2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY provisioning ./provisioning
RUN pip install --no-cache-dir .
VOLUME /data
EXPOSE 8080 51820/udp
ENTRYPOINT ["sh", "-c", "vpngw init --data-dir /data --json >/dev/null 2>&1 || true; exec vpngw serve --data-dir /data --listen 0.0.0.0:8080"]
