#!/bin/sh
# The filter's test: build it, deploy it to the local Envoy (`xds-server envoy`, with the
# server from `make run`), and check that a response carries the example's headers.
# FILTER, ENVOY_URL and XDS_SERVER_URL (the admin API) change the defaults.
set -eu
cd "$(dirname "$0")"
FILTER=${FILTER:-add-header}
URL=${ENVOY_URL:-http://127.0.0.1:10000/}
xds-server dev . --filter "$FILTER" --once
headers=$(curl -si "$URL")
for header in __HEADER__ __HEADER__-version __HEADER__-user-agent; do
  if ! printf '%s\n' "$headers" | grep -qi "^$header: "; then
    printf 'FAIL: no %s header from %s:\n%s\n' "$header" "$URL" "$headers"
    exit 1
  fi
done
echo "ok: $URL answers with __NAME__'s headers"
