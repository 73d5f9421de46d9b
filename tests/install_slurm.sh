#!/usr/bin/env bash
# Installs what the Slurm tests need (Debian packages slurm-wlm and munge) when it is missing.
# Needs root and apt-get (CI has both); elsewhere it says why, and those tests are skipped.
if command -v slurmctld >/dev/null && command -v munged >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "note: Slurm is not installed and this is not a root shell with apt-get: the Slurm tests will be skipped" >&2
    exit 0
fi
echo "installing slurm-wlm and munge for the Slurm tests" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
