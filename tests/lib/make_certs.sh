#!/usr/bin/env bash
# Makes the certificates the TLS tests use, with the `openssl` command, into DIR:
#   ca.pem ca.key                the authority the fleet trusts
#   node.pem node.key            a node: CN localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1,
#                                for servers and clients both (a node is both ends of its links)
#   other-ca.pem other-ca.key    a second authority, trusted by no one
#   other.pem other.key          a stranger: the same names as the node, signed by other-ca
#   wrong-name.pem wrong-name.key  CN and SAN example.org, signed by ca
#   expired.pem expired.key      the node's names, signed by ca, expired a day ago
#   encrypted.key                a key under a passphrase (`secret`), which a node cannot use
#   ed25519.key                  a key of another type than the certificates' (matches none)
# EC P-256 keys: quick. Every file is made afresh on each run, so that running it again on the
# same DIR leaves a whole, consistent set. Usage: make_certs.sh DIR
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: make_certs.sh DIR" >&2
    exit 2
fi
command -v openssl >/dev/null || { echo "make_certs.sh: the openssl command is not installed" >&2; exit 1; }
dir=$1
mkdir -p "$dir"
cd "$dir"
# `openssl req` reads no configuration beyond what is given here.
export OPENSSL_CONF=/dev/null

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# authority NAME CN: a self-signed authority NAME.pem with its key NAME.key.
authority() {
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 3650 -out "$1.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# leaf NAME CA CN SAN DAYS: NAME.pem with its key NAME.key, signed by CA.pem.
leaf() {
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$3" -out "$1.csr"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$4" >"$1.ext"
    # A random serial: a certificate made again is never taken for the one it replaces.
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "0x$(openssl rand -hex 8)" \
        -days "$5" -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

node_names="DNS:localhost,IP:127.0.0.1,IP:::1"
authority ca "meshrun test ca"
authority other-ca "meshrun stranger ca"
leaf node ca localhost "$node_names" 3650
leaf other other-ca localhost "$node_names" 3650
leaf wrong-name ca example.org "DNS:example.org" 3650
# -days -1: valid until a day before it was made, so expired now (OpenSSL 3.0 has no -not_after).
leaf expired ca localhost "$node_names" -1
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes-256-cbc -pass pass:secret -out encrypted.key 2>/dev/null
openssl genpkey -algorithm ed25519 -out ed25519.key 2>/dev/null
chmod 600 ./*.key
