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
# Listening on 0.0.0.0 in plain HTTP is refused until you choose: mount a certificate and
# set VPNGW_SERVER_TLS_CERT / VPNGW_SERVER_TLS_KEY, or set VPNGW_SERVER_ALLOW_PLAIN_HTTP=true
# (a TLS-terminating proxy in front, or a network you trust, as docker-compose.yml does).
ENTRYPOINT ["sh", "-c", "vpngw init --data-dir /data --json >/dev/null 2>&1 || true; exec vpngw serve --data-dir /data --listen 0.0.0.0:8080"]
