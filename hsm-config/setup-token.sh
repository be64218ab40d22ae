#!/bin/sh
# Creates a SoftHSM2 token for certgate: a token directory, its softhsm2.conf and a token
# initialised under LABEL (slot numbers change on initialisation; certgate finds the token
# by label). Prints the SOFTHSM2_CONF line to export on stdout.
#
# Usage: CERTGATE_HSM_PIN=... CERTGATE_HSM_SO_PIN=... setup-token.sh DIR [LABEL]
#
# The PINs come from the environment and are never printed. softhsm2-util reads PINs only
# from its arguments or a terminal, so they are visible in the process list for the moment
# the command runs: run this on a machine you trust (it is a test and development tool; a
# production HSM is initialised with its vendor's tools).
# Running it again with the same DIR and LABEL keeps the existing token.
set -eu

usage="usage: CERTGATE_HSM_PIN=... CERTGATE_HSM_SO_PIN=... $0 DIR [LABEL]"
dir=${1:?$usage}
label=${2:-certgate}
: "${CERTGATE_HSM_PIN:?set CERTGATE_HSM_PIN to the user PIN ($usage)}"
: "${CERTGATE_HSM_SO_PIN:?set CERTGATE_HSM_SO_PIN to the security officer PIN ($usage)}"
command -v softhsm2-util >/dev/null || { echo "softhsm2-util not found (Debian package softhsm2)" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
umask 077
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
sed "s|@TOKENDIR@|$dir/tokens|" "$here/softhsm2.conf.template" >"$dir/softhsm2.conf"
SOFTHSM2_CONF="$dir/softhsm2.conf"
export SOFTHSM2_CONF

if softhsm2-util --show-slots | grep -Eq "^[[:space:]]*Label:[[:space:]]+$label[[:space:]]*\$"; then
    echo "a token labelled $label already exists in $dir/tokens; kept" >&2
else
    softhsm2-util --init-token --free --label "$label" \
        --so-pin "$CERTGATE_HSM_SO_PIN" --pin "$CERTGATE_HSM_PIN" >/dev/null
    echo "initialised the token $label in $dir/tokens" >&2
fi
echo "export SOFTHSM2_CONF=$SOFTHSM2_CONF"
