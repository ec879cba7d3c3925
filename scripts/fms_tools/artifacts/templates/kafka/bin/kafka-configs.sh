#!/bin/bash
# Describe and alter dynamic broker, topic, client and user configs (incl. SCRAM credentials).
exec "$(dirname "$0")/kafka-run-class.sh" kafka.admin.ConfigCommand "$@"
