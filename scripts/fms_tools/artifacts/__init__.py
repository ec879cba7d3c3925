"""Lab artifact mirror builder.

Assembles Apache-layout archives (Kafka, Hadoop, Spark), a Maven-layout subtree of extra
jars and Prometheus-family tarballs from the package registries this machine reaches, so
the Ansible roles download them by "URL + checksum" exactly as they do from upstream.

Modules (one job each):
  config      pinned versions (versions.yml) and cache/mirror paths
  progress    progress lines with elapsed time
  checksums   digests and GNU-format checksum files
  manifest    input manifests that make rebuilds skip when nothing changed
  tarball     deterministic tar.gz writer
  maven       generated POMs + `mvn dependency:copy-dependencies` resolution
  templates   the launch scripts and default configs shipped in the archives
  kafka, hadoop, spark, maven_mirror, prometheus   one builder per archive family
  builders    the build registry (target name -> builder) and the cache check
  serve       threaded static HTTP server for the mirror directory
  cli         argument parsing for fms-artifacts
"""

from __future__ import annotations

import sys

# How other processes start this tool (the lab's mirror, the loopback Kafka broker, tests):
# with the interpreter that runs them, so the child sees the same installed packages.
COMMAND = (sys.executable, "-m", "fms_tools.artifacts")
