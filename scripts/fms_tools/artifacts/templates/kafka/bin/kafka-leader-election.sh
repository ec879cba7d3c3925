#!/bin/bash
# Trigger preferred/unclean leader election.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.LeaderElectionCommand "$@"
