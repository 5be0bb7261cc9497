#!/usr/bin/env bash
# The uvicorn equivalent of daphne@.service (docs/deploy.md, "uvicorn"). One process per
# port, like the daphne units; TLS still ends at nginx.
#   deploy/uvicorn.sh 8001
set -euo pipefail
PORT=${1:?port}
# --ws-max-size        = daphne --websocket-max-message-size
# --ws-ping-interval/--ws-ping-timeout = daphne --ping-interval/--ping-timeout
# --timeout-graceful-shutdown ~ daphne --application-close-timeout
# --ws-per-message-deflate false: no compression (daphne never negotiates it).
# --no-proxy-headers: the secure_ws gate is the one authority for proxy headers
#   (SECURE_WS_TRUSTED_PROXIES); with uvicorn's on, the gate logs a warning.
# --lifespan on: secure_ws.shutdown.lifespan writes the buffered audit records at shutdown
#   (uvicorn re-raises SIGTERM afterwards, so atexit never runs).
# Logs: the demo's LOGGING puts secure_ws.logging.RedactSecretsFilter on uvicorn's loggers
#   (uvicorn logs each WebSocket request line with its query string).
exec uvicorn project.asgi:application \
  --host 127.0.0.1 --port "$PORT" \
  --ws websockets-sansio \
  --ws-max-size 131072 \
  --ws-per-message-deflate false \
  --ws-ping-interval 20 --ws-ping-timeout 30 \
  --timeout-graceful-shutdown 10 \
  --timeout-keep-alive 5 \
  --no-proxy-headers \
  --no-server-header \
  --lifespan on
