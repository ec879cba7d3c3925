# Environment for every Hadoop command (sourced by libexec/hadoop-config.sh).
# Anything set here overrides the defaults; variables already exported by the caller win
# when written as  export VAR=${VAR:-default}.

# The java implementation to use. By default java is found on the PATH.
# export JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64

# Heap of every Hadoop JVM, in MB unless a unit is given (upstream semantics).
# export HADOOP_HEAPSIZE_MAX=1g
# export HADOOP_HEAPSIZE_MIN=

# Extra JVM options: all commands / client commands / per daemon.
# export HADOOP_OPTS=""
# export HADOOP_CLIENT_OPTS=""
# export HDFS_NAMENODE_OPTS="-Dhadoop.security.logger=INFO,RFAS"
# export HDFS_DATANODE_OPTS="-Dhadoop.security.logger=ERROR,RFAS"
# export HDFS_SECONDARYNAMENODE_OPTS=""

# Where logs and pid files go, and who a daemon must run as.
# export HADOOP_LOG_DIR=${HADOOP_HOME}/logs
# export HADOOP_PID_DIR=/tmp
# export HDFS_NAMENODE_USER=hdfs
# export HDFS_DATANODE_USER=hdfs
# export HDFS_SECONDARYNAMENODE_USER=hdfs

# Seconds `--daemon stop` waits before kill -9.
# export HADOOP_STOP_TIMEOUT=5
