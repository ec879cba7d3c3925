#!/bin/bash
# Describe the KRaft metadata quorum (status, replication); add/remove controllers.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.MetadataQuorumCommand "$@"
