#!/usr/bin/env bash
# Prints the environment Terraform needs here, for `eval "$(...)"`.
# With a provider mirror installer available (air-gapped machines: set
# FMS_TERRAFORM_MIRROR_INSTALLER, or the sibling ../shared/tools/terraform/install.sh
# exists) Terraform and hashicorp/aws come from it; otherwise the system
# `terraform` and its normal registry are used untouched.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
installer="${FMS_TERRAFORM_MIRROR_INSTALLER:-$repo/../shared/tools/terraform/install.sh}"
if [ -x "$installer" ] || [ -f "$installer" ]; then
  bash "$installer" "${FMS_CACHE_DIR:-/var/cache/fms-platform}/terraform-offline"
elif ! command -v terraform >/dev/null; then
  echo "echo 'terraform not found: install Terraform >= 1.11 or set FMS_TERRAFORM_MIRROR_INSTALLER' >&2; false"
fi
