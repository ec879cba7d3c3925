#!/usr/bin/env bash
# Start the HDFS daemons of THIS host: namenode, then datanode (single-host helper; the Ansible
# role runs one systemd unit per daemon instead). Upstream's version ssh-es to every worker.
HADOOP_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$HADOOP_HOME/bin/hdfs" "$@" --daemon start namenode || exit 1
"$HADOOP_HOME/bin/hdfs" "$@" --daemon start datanode
