#!/usr/bin/env bash
# Shared environment for bin/hadoop, bin/hdfs and sbin/hadoop-daemon.sh of the lab-assembled
# Apache Hadoop distribution. Sourced, not executed. Honours the Hadoop 3 variables operators
# use: JAVA_HOME, HADOOP_CONF_DIR, HADOOP_LOG_DIR, HADOOP_PID_DIR, HADOOP_IDENT_STRING,
# HADOOP_HEAPSIZE_MAX/MIN, HADOOP_OPTS, HADOOP_CLIENT_OPTS, HDFS_<COMMAND>_OPTS,
# HDFS_<COMMAND>_USER, HADOOP_CLASSPATH, HADOOP_USER_CLASSPATH_FIRST, HADOOP_ROOT_LOGGER,
# HADOOP_DAEMON_ROOT_LOGGER, HADOOP_SECURITY_LOGGER, HADOOP_STOP_TIMEOUT.

HADOOP_HOME=${HADOOP_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export HADOOP_HOME
export HADOOP_COMMON_HOME=${HADOOP_COMMON_HOME:-$HADOOP_HOME}
export HADOOP_HDFS_HOME=${HADOOP_HDFS_HOME:-$HADOOP_HOME}
export HADOOP_LIBEXEC_DIR=${HADOOP_LIBEXEC_DIR:-$HADOOP_HOME/libexec}

hadoop_error() {
  echo "$*" 1>&2
}

# Generic options that precede the subcommand: --config DIR, --loglevel LEVEL, --daemon MODE.
# Sets HADOOP_DAEMON_MODE and the array HADOOP_REMAINING_ARGS.
hadoop_parse_generic_args() {
  HADOOP_DAEMON_MODE=default
  while [ $# -gt 0 ]; do
    case "$1" in
      --config)
        [ -n "$2" ] || { hadoop_error "ERROR: --config requires a directory"; exit 1; }
        HADOOP_CONF_DIR=$2; shift 2 ;;
      --loglevel)
        HADOOP_LOGLEVEL=$2; shift 2 ;;
      --daemon)
        HADOOP_DAEMON_MODE=$2; shift 2 ;;
      --debug)
        set -x; shift ;;
      *)
        break ;;
    esac
  done
  HADOOP_REMAINING_ARGS=("$@")
}

# Environment once the configuration directory is known.
hadoop_finalize_env() {
  HADOOP_CONF_DIR=${HADOOP_CONF_DIR:-$HADOOP_HOME/etc/hadoop}
  if [ ! -d "$HADOOP_CONF_DIR" ]; then
    hadoop_error "ERROR: Cannot find configuration directory \"$HADOOP_CONF_DIR\""
    exit 1
  fi
  export HADOOP_CONF_DIR
  if [ -f "$HADOOP_CONF_DIR/hadoop-env.sh" ]; then
    # shellcheck disable=SC1091
    . "$HADOOP_CONF_DIR/hadoop-env.sh"
  fi

  if [ -n "$JAVA_HOME" ]; then
    JAVA="$JAVA_HOME/bin/java"
  else
    JAVA=$(command -v java)
  fi
  if [ -z "$JAVA" ] || [ ! -x "$JAVA" ]; then
    hadoop_error "ERROR: JAVA_HOME is not set and could not be found."
    exit 1
  fi

  HADOOP_LOG_DIR=${HADOOP_LOG_DIR:-$HADOOP_HOME/logs}
  HADOOP_PID_DIR=${HADOOP_PID_DIR:-/tmp}
  HADOOP_IDENT_STRING=${HADOOP_IDENT_STRING:-${USER:-$(id -un)}}
  HADOOP_LOGFILE=${HADOOP_LOGFILE:-hadoop.log}
  HADOOP_ROOT_LOGGER=${HADOOP_ROOT_LOGGER:-${HADOOP_LOGLEVEL:-INFO},console}
  HADOOP_SECURITY_LOGGER=${HADOOP_SECURITY_LOGGER:-INFO,NullAppender}
  HADOOP_STOP_TIMEOUT=${HADOOP_STOP_TIMEOUT:-5}
  export HADOOP_LOG_DIR HADOOP_PID_DIR HADOOP_IDENT_STRING

  # Classpath in the order of the official scripts.
  local hadoop_cp="$HADOOP_CONF_DIR"
  hadoop_cp="$hadoop_cp:$HADOOP_COMMON_HOME/share/hadoop/common/lib/*"
  hadoop_cp="$hadoop_cp:$HADOOP_COMMON_HOME/share/hadoop/common/*"
  # The directory itself: the NameNode/DataNode web UIs load webapps/ from it.
  hadoop_cp="$hadoop_cp:$HADOOP_HDFS_HOME/share/hadoop/hdfs"
  hadoop_cp="$hadoop_cp:$HADOOP_HDFS_HOME/share/hadoop/hdfs/lib/*"
  hadoop_cp="$hadoop_cp:$HADOOP_HDFS_HOME/share/hadoop/hdfs/*"
  if [ -n "$HADOOP_CLASSPATH" ]; then
    if [ -n "$HADOOP_USER_CLASSPATH_FIRST" ]; then
      hadoop_cp="$HADOOP_CLASSPATH:$hadoop_cp"
    else
      hadoop_cp="$hadoop_cp:$HADOOP_CLASSPATH"
    fi
  fi
  CLASSPATH=$hadoop_cp
  export CLASSPATH

  # Heap: numbers are megabytes (as upstream), anything else is passed through.
  HADOOP_HEAP_OPTS=""
  local max=${HADOOP_HEAPSIZE_MAX:-$HADOOP_HEAPSIZE}
  if [ -n "$max" ]; then
    [[ "$max" =~ ^[0-9]+$ ]] && max="${max}m"
    HADOOP_HEAP_OPTS="-Xmx$max"
  fi
  if [ -n "$HADOOP_HEAPSIZE_MIN" ]; then
    local min=$HADOOP_HEAPSIZE_MIN
    [[ "$min" =~ ^[0-9]+$ ]] && min="${min}m"
    HADOOP_HEAP_OPTS="$HADOOP_HEAP_OPTS -Xms$min"
  fi
}

# HDFS_<SUBCMD>_USER: refuse to run a subcommand as the wrong user (as upstream).
hadoop_verify_user() {
  local program=$1 subcmd=$2
  local uvar
  uvar="${program^^}_${subcmd^^}_USER"
  if [ -n "${!uvar}" ] && [ "${!uvar}" != "${USER:-$(id -un)}" ]; then
    hadoop_error "ERROR: $subcmd can only be executed by ${!uvar}."
    exit 1
  fi
}

# Major version of $JAVA (8 for 1.8), from $JAVA_HOME/release when available (no JVM start).
hadoop_java_major() {
  local v=""
  if [ -n "$JAVA_HOME" ] && [ -f "$JAVA_HOME/release" ]; then
    v=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$JAVA_HOME/release")
  fi
  if [ -z "$v" ]; then
    v=$("$JAVA" -version 2>&1 | sed -E -n 's/.* version "([0-9]*).*$/\1/p' | head -n 1)
  fi
  [ "$v" = 1 ] && v=8
  echo "${v:-0}"
}

# JVM system properties every Hadoop process gets.
hadoop_finalize_opts() {
  local subcmd=$1
  HADOOP_OPTS="$HADOOP_OPTS -Djava.net.preferIPv4Stack=true"
  HADOOP_OPTS="$HADOOP_OPTS -Dhadoop.log.dir=$HADOOP_LOG_DIR"
  HADOOP_OPTS="$HADOOP_OPTS -Dhadoop.log.file=$HADOOP_LOGFILE"
  HADOOP_OPTS="$HADOOP_OPTS -Dhadoop.home.dir=$HADOOP_HOME"
  HADOOP_OPTS="$HADOOP_OPTS -Dhadoop.id.str=$HADOOP_IDENT_STRING"
  HADOOP_OPTS="$HADOOP_OPTS -Dhadoop.root.logger=$HADOOP_ROOT_LOGGER"
  HADOOP_OPTS="$HADOOP_OPTS -Dhadoop.policy.file=hadoop-policy.xml"
  HADOOP_OPTS="$HADOOP_OPTS -Dhadoop.security.logger=$HADOOP_SECURITY_LOGGER"
  if [ -d "$HADOOP_HOME/lib/native" ] && compgen -G "$HADOOP_HOME/lib/native/*.so*" > /dev/null; then
    HADOOP_OPTS="$HADOOP_OPTS -Djava.library.path=$HADOOP_HOME/lib/native"
  fi
  # Java 9+ module access Hadoop 3.4 needs for reflection (as Hadoop 3.5's scripts add).
  if [ "$(hadoop_java_major)" -ge 9 ]; then
    HADOOP_OPTS="$HADOOP_OPTS --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED"
    HADOOP_OPTS="$HADOOP_OPTS --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/sun.security.x509=ALL-UNNAMED"
  fi
  HADOOP_OPTS="-Dproc_$subcmd $HADOOP_OPTS"
}

# Run CLASS in the foreground (exec).
hadoop_java_exec() {
  local class=$1
  shift
  # shellcheck disable=SC2086
  exec "$JAVA" $HADOOP_HEAP_OPTS $HADOOP_OPTS -classpath "$CLASSPATH" "$class" "$@"
}

hadoop_pid_alive() {
  [ -n "$1" ] && kill -0 "$1" > /dev/null 2>&1
}

# --daemon start|stop|status for a daemon subcommand.
hadoop_daemon_handler() {
  local mode=$1 subcmd=$2 class=$3
  shift 3
  local pidfile="$HADOOP_PID_DIR/hadoop-$HADOOP_IDENT_STRING-$subcmd.pid"
  local outfile="$HADOOP_LOG_DIR/hadoop-$HADOOP_IDENT_STRING-$subcmd-$HOSTNAME.out"
  local pid=""
  [ -f "$pidfile" ] && pid=$(cat "$pidfile" 2>/dev/null)
  case "$mode" in
    status)
      if hadoop_pid_alive "$pid"; then
        echo "$subcmd is running as process $pid."
        exit 0
      elif [ -f "$pidfile" ]; then
        echo "$subcmd is not running, but the pid file $pidfile exists."
        exit 1
      fi
      echo "$subcmd is not running."
      exit 3
      ;;
    stop)
      if hadoop_pid_alive "$pid"; then
        kill -TERM "$pid" > /dev/null 2>&1
        local waited=0
        while hadoop_pid_alive "$pid" && [ "$waited" -lt "$((HADOOP_STOP_TIMEOUT * 10))" ]; do
          sleep 0.1
          waited=$((waited + 1))
        done
        if hadoop_pid_alive "$pid"; then
          hadoop_error "WARNING: $subcmd did not stop gracefully after $HADOOP_STOP_TIMEOUT seconds: Trying to kill with kill -9"
          kill -9 "$pid" > /dev/null 2>&1
        fi
      else
        echo "no $subcmd to stop"
      fi
      rm -f "$pidfile"
      exit 0
      ;;
    start)
      if hadoop_pid_alive "$pid"; then
        hadoop_error "$subcmd is running as process $pid.  Stop it first and ensure $pidfile file is empty before retry."
        exit 1
      fi
      mkdir -p "$HADOOP_LOG_DIR" "$HADOOP_PID_DIR" || exit 1
      HADOOP_LOGFILE="hadoop-$HADOOP_IDENT_STRING-$subcmd-$HOSTNAME.log"
      HADOOP_ROOT_LOGGER=${HADOOP_DAEMON_ROOT_LOGGER:-INFO,RFA}
      HADOOP_OPTS="$HADOOP_OPTS -Dhadoop.log.file=$HADOOP_LOGFILE -Dhadoop.root.logger=$HADOOP_ROOT_LOGGER"
      # shellcheck disable=SC2086
      nohup "$JAVA" $HADOOP_HEAP_OPTS $HADOOP_OPTS -classpath "$CLASSPATH" "$class" "$@" > "$outfile" 2>&1 < /dev/null &
      pid=$!
      echo "$pid" > "$pidfile"
      sleep 1
      if ! hadoop_pid_alive "$pid"; then
        hadoop_error "ERROR: $subcmd failed to start; last lines of $outfile:"
        tail -n 20 "$outfile" 1>&2
        rm -f "$pidfile"
        exit 1
      fi
      exit 0
      ;;
    *)
      hadoop_error "ERROR: --daemon must be start, stop or status (got '$mode')"
      exit 1
      ;;
  esac
}
