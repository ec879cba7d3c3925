#!/bin/bash
# Dump log segments and KRaft metadata snapshots.
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.DumpLogSegments "$@"
