#!/usr/bin/env bash
# Installs the Debian packages the tests use when they are missing: slurm-wlm and munge (the
# one-node Slurm of the sweep tests) and dataset-fashion-mnist (the test on the real
# Fashion-MNIST files). Needs root and apt-get (CI has both); elsewhere it says why, and
# those tests are skipped.
missing=()
command -v slurmctld >/dev/null && command -v munged >/dev/null || missing+=(slurm-wlm munge)
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "note: ${missing[*]} not installed and this is not a root shell with apt-get: the tests that need them will be skipped" >&2
    exit 0
fi
echo "installing ${missing[*]} for the tests" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
