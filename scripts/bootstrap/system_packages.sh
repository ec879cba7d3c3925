#!/usr/bin/env bash
# Installs the Debian packages the lab and the test suite need (idempotent).
set -euo pipefail
packages=(
  systemd-container debootstrap iptables iproute2 bridge-utils openssh-client
  curl xz-utils ca-certificates rsync sshpass
  prometheus prometheus-alertmanager   # promtool / amtool validate configs and rule tests
  maven openjdk-17-jdk-headless        # assembling Kafka/Hadoop from Maven Central, running them
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "[bootstrap] missing Debian packages: ${missing[*]} — run as root or install them: apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "[bootstrap] installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The prometheus packages would start daemons on :9090/:9093 on the lab machine; we only want the CLIs.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
