#!/usr/bin/env bash
# Provisions a software TPM's state the way a TPM manufacturer would: an EK (RSA-2048 and
# ECC P-384) whose certificates, signed by a local CA that plays the manufacturer, are
# stored in the TPM's NV (RSA EK certificate at 0x01C00002) and written out as DER files;
# a platform certificate; NV locked; the SHA-256 PCR bank only.
#
#   qemu/tpm-setup.sh STATE_DIR CA_DIR
#
# STATE_DIR: the TPM's state (one per machine, e.g. per replica). Left alone if it already
#   holds a provisioned TPM. The EK certificates go to STATE_DIR/ek-rsa2048.crt and
#   STATE_DIR/ek-secp384r1.crt.
# CA_DIR: the local CA (created on first use, then reused, so every TPM provisioned with the
#   same CA_DIR chains to one root): CA_DIR/ca/swtpm-localca-rootca-cert.pem (the root a
#   verifier trusts) and CA_DIR/ca/issuercert.pem (the intermediate).
#
# Nothing outside the two folders is written: swtpm_setup's configuration files live in
# CA_DIR (through XDG_CONFIG_HOME), not in the user's or the system's configuration.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 STATE_DIR CA_DIR" >&2
    exit 2
fi
state=$(realpath -m "$1")
ca=$(realpath -m "$2")

for tool in swtpm swtpm_setup swtpm_localca; do
    command -v "$tool" >/dev/null || {
        echo "tpm-setup: $tool is missing (apt-get install swtpm swtpm-tools)" >&2
        exit 1
    }
done

if [ -s "$state/tpm2-00.permall" ] && [ -s "$state/ek-rsa2048.crt" ]; then
    exit 0
fi
mkdir -p "$state" "$ca"
export XDG_CONFIG_HOME="$ca"
if [ ! -s "$ca/swtpm_setup.conf" ]; then
    swtpm_setup --create-config-files overwrite,root >/dev/null
    # Keep the CA's files under CA_DIR/ca (the generated configuration points at
    # $XDG_CONFIG_HOME/var/lib/swtpm-localca).
    sed -i "s|$ca/var/lib/swtpm-localca|$ca/ca|g" "$ca/swtpm-localca.conf"
fi
mkdir -p "$ca/ca"
swtpm_setup --tpm2 --tpmstate "$state" --create-ek-cert --create-platform-cert --lock-nvram \
    --pcr-banks sha256 --write-ek-cert-files "$state" >"$state/setup.log" 2>&1 || {
    cat "$state/setup.log" >&2
    exit 1
}
