#!/usr/bin/env bash
# Stop the HDFS daemons of THIS host (see start-dfs.sh).
HADOOP_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$HADOOP_HOME/bin/hdfs" "$@" --daemon stop datanode
"$HADOOP_HOME/bin/hdfs" "$@" --daemon stop namenode
