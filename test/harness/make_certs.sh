#!/usr/bin/env bash
# Makes the TLS material for the tests in DIR (loopback only):
#   ca.pem/ca.key          the test CA
#   server.pem/server.key  for 127.0.0.1 and localhost, signed by the CA
#   expired.pem/expired.key  same names, valid only in 2020
#   client.pem/client.key  a client certificate (clientAuth), signed by the CA
#   other-ca.pem           an unrelated CA (for "unknown authority")
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
q() { "$@" >/dev/null 2>&1 || { echo "make_certs: failed: $*" >&2; "$@"; exit 1; }; }
q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 -subj /CN=etcdreg-test-ca
q openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 3650 -subj /CN=etcdreg-other-ca
cat > server.ext <<'EXT'
subjectAltName = IP:127.0.0.1, DNS:localhost
extendedKeyUsage = serverAuth, clientAuth
EXT
cat > client.ext <<'EXT'
extendedKeyUsage = clientAuth
EXT
q openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
q openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -out server.pem -extfile server.ext
q openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj /CN=root
q openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -out client.pem -extfile client.ext
# An expired server certificate: openssl ca takes explicit dates.
q openssl req -newkey rsa:2048 -nodes -keyout expired.key -out expired.csr -subj /CN=localhost
: > index.txt
echo 1000 > serial
cat > ca.cnf <<'CNF'
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[ any ]
commonName = supplied
[ server_ext ]
subjectAltName = IP:127.0.0.1, DNS:localhost
extendedKeyUsage = serverAuth
CNF
q openssl ca -batch -config ca.cnf -extensions server_ext -in expired.csr -out expired.pem \
  -startdate 20200101000000Z -enddate 20200102000000Z -notext
echo ok
