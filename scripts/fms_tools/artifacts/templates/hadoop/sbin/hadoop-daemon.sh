#!/usr/bin/env bash
# Deprecated upstream in Hadoop 3 in favour of `hdfs --daemon`; kept for operators' muscle memory.
#   hadoop-daemon.sh [--config confdir] (start|stop|status) <hadoop-command> <args...>

usage="Usage: hadoop-daemon.sh [--config confdir] (start|stop|status) <hadoop-command> <args...>"
if [ $# -le 1 ]; then
  echo "$usage"
  exit 1
fi

HADOOP_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
config=()
if [ "$1" = "--config" ]; then
  config=(--config "$2")
  shift 2
fi

daemonmode=$1
shift

echo "WARNING: Use of this script to ${daemonmode} HDFS daemons is deprecated." 1>&2
echo "WARNING: Attempting to execute replacement \"hdfs --daemon ${daemonmode}\" instead." 1>&2
exec "$HADOOP_HOME/bin/hdfs" "${config[@]}" --daemon "$daemonmode" "$@"
