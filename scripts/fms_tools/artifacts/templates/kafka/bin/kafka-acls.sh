#!/bin/bash
# Add, remove and list ACLs.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.AclCommand "$@"
