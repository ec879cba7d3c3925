#!/bin/bash
# Describe, upgrade and downgrade cluster feature flags (metadata.version).
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.FeatureCommand "$@"
