#!/usr/bin/env bash
# Starts a Spark standalone worker on this machine (as upstream's start-worker.sh).
#   start-worker.sh spark://master:7077 [options]
# Environment: SPARK_WORKER_INSTANCES (1), SPARK_WORKER_PORT (random), SPARK_WORKER_WEBUI_PORT
# (8081), SPARK_WORKER_CORES, SPARK_WORKER_MEMORY, SPARK_WORKER_DIR, SPARK_WORKER_OPTS.

if [ -z "${SPARK_HOME}" ]; then
  SPARK_HOME="$(cd "$(dirname "$0")"/.. && pwd)"
  export SPARK_HOME
fi

# NOTE: This exact class name is matched downstream by SparkSubmit.
# Any changes need to be reflected there.
CLASS="org.apache.spark.deploy.worker.Worker"

if [[ $# -lt 1 ]] || [[ "$*" = *--help ]] || [[ "$*" = *-h ]]; then
  echo "Usage: ./sbin/start-worker.sh <master> [options]"
  pattern="Usage:"
  pattern+="\|Using Spark's default log4j profile:"
  pattern+="\|Started daemon with process name"
  pattern+="\|Registered signal handler for"
  "${SPARK_HOME}"/bin/spark-class $CLASS --help 2>&1 | grep -v "$pattern" 1>&2
  exit 1
fi

. "${SPARK_HOME}/sbin/spark-config.sh"

. "${SPARK_HOME}/bin/load-spark-env.sh"

# First argument should be the master; we need to store it aside because we may
# need to insert arguments between it and the other arguments
MASTER=$1
shift

# Determine desired worker port
if [ "$SPARK_WORKER_WEBUI_PORT" = "" ]; then
  SPARK_WORKER_WEBUI_PORT=8081
fi

# Start up the appropriate number of workers on this machine.
# quick local function to start a worker
function start_instance {
  WORKER_NUM=$1
  shift

  if [ "$SPARK_WORKER_PORT" = "" ]; then
    PORT_FLAG=
    PORT_NUM=
  else
    PORT_FLAG="--port"
    PORT_NUM=$(( SPARK_WORKER_PORT + WORKER_NUM - 1 ))
  fi
  WEBUI_PORT=$(( SPARK_WORKER_WEBUI_PORT + WORKER_NUM - 1 ))

  # shellcheck disable=SC2086
  "${SPARK_HOME}/sbin"/spark-daemon.sh start $CLASS "$WORKER_NUM" \
     --webui-port "$WEBUI_PORT" $PORT_FLAG $PORT_NUM "$MASTER" "$@"
}

if [ "$SPARK_WORKER_INSTANCES" = "" ]; then
  start_instance 1 "$@"
else
  for ((i=0; i<SPARK_WORKER_INSTANCES; i++)); do
    start_instance $(( 1 + i )) "$@"
  done
fi
