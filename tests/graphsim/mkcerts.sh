#!/bin/bash
# mkcerts.sh DIR: test certificates for the Graph simulator, made with the openssl CLI.
#   ca.pem, ca.key          a private CA (the client's ca_file)
#   server.pem, server.key  the simulator's TLS certificate, SAN IP:127.0.0.1 + DNS:localhost
#   app.pem, app.key        the application certificate (RSA 2048) whose key signs the
#                           JWT client assertion; "registered" in the tenant fixture
# Idempotent: files that exist and still fit together are kept.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
mkdir -p "$dir"
cd "$dir"
umask 077

have() { for f in "$@"; do [ -s "$f" ] || return 1; done; }
# run an openssl command quietly, showing its output only if it fails
quiet() {
	local out
	out=$("$@" 2>&1) || { echo "mkcerts: $*: $out" >&2; return 1; }
}

make_ca() {
	have ca.pem ca.key && return 0
	rm -f server.pem server.key # a new CA invalidates the old server certificate
	quiet openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
		-keyout ca.key -out ca.pem -subj "/CN=graphsim test CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign"
}

make_server() {
	if have server.pem server.key &&
		openssl verify -CAfile ca.pem server.pem >/dev/null 2>&1; then
		return 0
	fi
	cat >server.ext <<-EXT
		basicConstraints=critical,CA:FALSE
		keyUsage=critical,digitalSignature,keyEncipherment
		extendedKeyUsage=serverAuth
		subjectAltName=IP:127.0.0.1,DNS:localhost
		subjectKeyIdentifier=hash
		authorityKeyIdentifier=keyid,issuer
	EXT
	quiet openssl req -newkey rsa:2048 -nodes -sha256 -keyout server.key -out server.csr \
		-subj "/CN=localhost"
	quiet openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -sha256 -days 825 \
		-set_serial "0x$(openssl rand -hex 8)" -extfile server.ext -out server.pem
	rm -f server.ext server.csr
}

make_app() {
	have app.pem app.key && return 0
	quiet openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 730 \
		-keyout app.key -out app.pem -subj "/CN=numprov graphsim app"
}

make_ca
make_server
make_app
chmod 644 ca.pem server.pem app.pem
