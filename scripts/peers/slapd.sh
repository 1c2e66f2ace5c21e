#!/usr/bin/env bash
# A throw-away OpenLDAP slapd for tests and benchmarks, on 127.0.0.1 only.
#   slapd.sh start DIR PORT LDIF [tls]   load LDIF offline (slapadd), start slapd; with "tls", make a CA and a
#                                        server certificate for 127.0.0.1 (DIR/ca.pem) and enable StartTLS/ldaps
#   slapd.sh stop DIR                    stop it (bounded: SIGTERM, then SIGKILL after 5 s)
# Installs slapd and ldap-utils when missing (Debian, as root). The service account
# cn=litellm-sync,ou=services,dc=example,dc=org (password sync-secret) is size-limited to 500 entries per
# search, paging unlimited, as a real directory would limit it; the rootdn (cn=admin, "secret") is not.
set -euo pipefail
cmd=$1; DIR=$2
need() { command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || {
  apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >/dev/null; }; }
case "$cmd" in
start)
  PORT=$3; LDIF=$4; TLS=${5:-}
  need
  rm -rf "$DIR"; mkdir -p "$DIR/db"
  tlsconf=""
  if [ "$TLS" = tls ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=litellm-sync test CA" \
      -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$DIR/san.ext"
    openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial -days 2 \
      -extfile "$DIR/san.ext" -out "$DIR/server.pem" 2>/dev/null
    chmod 644 "$DIR"/*.key
    tlsconf="TLSCACertificateFile $DIR/ca.pem
TLSCertificateFile $DIR/server.pem
TLSCertificateKeyFile $DIR/server.key"
  fi
  cat > "$DIR/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile $DIR/slapd.pid
argsfile $DIR/slapd.args
$tlsconf
database mdb
maxsize 4294967296
suffix "dc=example,dc=org"
rootdn "cn=admin,dc=example,dc=org"
rootpw secret
directory $DIR/db
dbnosync
index objectClass eq
index uid,mail,cn eq
index member eq
index entryUUID eq
limits dn.exact="cn=litellm-sync,ou=services,dc=example,dc=org" size.soft=500 size.hard=500 size.prtotal=unlimited
access to attrs=userPassword by self read by anonymous auth by * none
access to * by dn.exact="cn=litellm-sync,ou=services,dc=example,dc=org" read by * none
CONF
  slapadd -q -f "$DIR/slapd.conf" -l "$LDIF" >/dev/null
  urls="ldap://127.0.0.1:$PORT/"
  [ "$TLS" = tls ] && urls="$urls ldaps://127.0.0.1:$((PORT + 1))/"
  /usr/sbin/slapd -f "$DIR/slapd.conf" -h "$urls" -d 0 >"$DIR/slapd.log" 2>&1 &
  echo $! > "$DIR/pid"
  for _ in $(seq 1 100); do
    ldapsearch -x -H "ldap://127.0.0.1:$PORT" -D cn=admin,dc=example,dc=org -w secret -b dc=example,dc=org -s base \
      '(objectClass=*)' dn >/dev/null 2>&1 && exit 0
    sleep 0.1
  done
  echo "slapd did not start; see $DIR/slapd.log" >&2; cat "$DIR/slapd.log" >&2; exit 1 ;;
stop)
  [ -f "$DIR/pid" ] || exit 0
  pid=$(cat "$DIR/pid"); kill "$pid" 2>/dev/null || exit 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true ;;
*) echo "usage: $0 start DIR PORT LDIF [tls] | stop DIR" >&2; exit 2 ;;
esac
