#!/bin/bash
# Stops Kafka servers started with kafka-server-start.sh (signal: $SIGNAL, default TERM).
# Optional filters, as upstream: --process-role=broker|controller  or  --node-id=N
SIGNAL=${SIGNAL:-TERM}

FILTER_ROLE=""
FILTER_NODE=""
for arg in "$@"; do
  case $arg in
    --process-role=*) FILTER_ROLE=${arg#*=} ;;
    --node-id=*) FILTER_NODE=${arg#*=} ;;
    --process-role|--node-id)
      echo "Use $arg=VALUE" >&2; exit 1 ;;
    *)
      echo "USAGE: $0 [--process-role=ROLE | --node-id=ID]" >&2; exit 1 ;;
  esac
done

# The properties file of a running server: the argument after the main class.
config_of() {
  tr '\0' '\n' < "/proc/$1/cmdline" 2>/dev/null | awk 'found { print; exit } $0 == "kafka.Kafka" { found = 1 }'
}

PIDS=""
for pid in $(ps ax | grep ' kafka\.Kafka ' | grep java | grep -v grep | awk '{print $1}'); do
  if [ -n "$FILTER_ROLE" ] || [ -n "$FILTER_NODE" ]; then
    conf=$(config_of "$pid")
    [ -r "$conf" ] || continue
    if [ -n "$FILTER_ROLE" ]; then
      roles=$(sed -n 's/^[[:space:]]*process\.roles[[:space:]]*=[[:space:]]*//p' "$conf" | tr -d '[:space:]')
      [ "$roles" = "$FILTER_ROLE" ] || continue
    fi
    if [ -n "$FILTER_NODE" ]; then
      node=$(sed -n 's/^[[:space:]]*node\.id[[:space:]]*=[[:space:]]*//p' "$conf" | tr -d '[:space:]')
      [ "$node" = "$FILTER_NODE" ] || continue
    fi
  fi
  PIDS="$PIDS $pid"
done

if [ -z "$PIDS" ]; then
  echo "No kafka server to stop"
  exit 1
else
  # shellcheck disable=SC2086
  kill -s "$SIGNAL" $PIDS
fi
