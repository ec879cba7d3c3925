#!/bin/bash
# Print the API versions each broker supports (a cheap liveness probe).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
