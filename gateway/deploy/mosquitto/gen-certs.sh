#!/bin/sh
# A CA, a broker certificate and client certificates for mosquitto-tls.conf (openssl only).
#
#   gen-certs.sh OUT_DIR BROKER_HOST CLIENT_CN [CLIENT_CN ...]
#
# Each client certificate's CN is its MQTT user name (use_identity_as_username): a
# vehicle's CN is its VIN, the gateway's is `vehicle-ingest-gateway` (see acl).
# Writes ca.crt/ca.key, broker.crt/broker.key and <CN>.crt/<CN>.key; an existing
# ca.key is reused, so more vehicles can be enrolled later with the same CA.
# Keep ca.key offline in production: whoever holds it can mint any VIN.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 OUT_DIR BROKER_HOST CLIENT_CN [CLIENT_CN ...]" >&2; exit 2; }
out=$1 host=$2
shift 2
mkdir -p "$out"
cd "$out"
umask 077
days=${CERT_DAYS:-825}
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -f ca.key ]; then
  key ca.key
  openssl req -x509 -new -key ca.key -out ca.crt -days 3650 -subj "/CN=vehicle-ingest fleet CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
fi

# issue NAME CN EXTENSIONS
issue() {
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days "$days" \
    -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

issue broker "$host" "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
for cn in "$@"; do
  issue "$cn" "$cn" "extendedKeyUsage=clientAuth"
done
chmod 644 ca.crt ./*.crt
echo "wrote $(ls "$PWD"/*.crt | tr '\n' ' ')"
