#!/bin/bash
# Formats and inspects KRaft metadata/log directories (format, random-uuid, info).
exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
