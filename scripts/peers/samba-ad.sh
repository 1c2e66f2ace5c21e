#!/usr/bin/env bash
# A throw-away Samba Active Directory domain controller for tests, on 127.0.0.1 only.
#   samba-ad.sh start DIR     provision the domain EXAMPLE.ORG (dc=example,dc=org) in DIR and start samba; returns
#                             once LDAP answers on 127.0.0.1:389 (bounded: 60 s)
#   samba-ad.sh stop DIR      stop it (bounded: SIGTERM to its process group, then SIGKILL after 10 s)
#   samba-ad.sh tool DIR ARGS run `samba-tool ARGS` against DIR's database (e.g. user create, user disable)
# Administrator's password is Passw0rd!Test. Simple binds without TLS are allowed (ldap server require strong auth =
# no). Only the LDAP service runs, but its ports are fixed (389, 636, 3268, 3269): one instance per machine.
# Installs samba-ad-dc and samba-ad-provision when missing (Debian, as root; samba needs root anyway).
set -euo pipefail
cmd=${1:-}; DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start DIR | stop DIR | tool DIR ARGS..." >&2; exit 2; }
ADMINPASS='Passw0rd!Test'
LAST=/tmp/litellm-sync-samba-ad.last   # the DIR of the last DC started, to clean up after a killed test run
need() {
  command -v samba >/dev/null 2>&1 && command -v samba-tool >/dev/null 2>&1 && [ -d /usr/share/samba/setup ] && return
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends samba-ad-dc samba-ad-provision \
    ldap-utils >/dev/null
}
ldap_up() {
  ldapsearch -x -H ldap://127.0.0.1:389 -D Administrator@example.org -w "$ADMINPASS" -b DC=example,DC=org -s base \
    '(objectClass=*)' dn >/dev/null 2>&1
}
case "$cmd" in
start)
  [ "$(id -u)" = 0 ] || { echo "samba-ad.sh: samba needs root (fixed ports, file ownership)" >&2; exit 1; }
  need
  # A DC this script started earlier whose test process died before stopping it (SIGKILL): stop that one.
  if (exec 3<>/dev/tcp/127.0.0.1/389) 2>/dev/null && [ -f "$LAST" ]; then
    prev=$(cat "$LAST")
    if [ -f "$prev/pid" ] && grep -qa '^samba' "/proc/$(cat "$prev/pid")/cmdline" 2>/dev/null; then
      echo "samba-ad.sh: stopping the leftover DC in $prev" >&2
      "$0" stop "$prev" || true
    fi
  fi
  if (exec 3<>/dev/tcp/127.0.0.1/389) 2>/dev/null; then
    echo "samba-ad.sh: something already listens on 127.0.0.1:389 (another Samba AD?); stop it first" >&2; exit 1
  fi
  echo "$DIR" > "$LAST"
  rm -rf "$DIR"; mkdir -p "$DIR"
  samba-tool domain provision --targetdir="$DIR" --realm=EXAMPLE.ORG --domain=EXAMPLE --server-role=dc \
    --dns-backend=NONE --use-rfc2307 --adminpass="$ADMINPASS" --host-name=dc1 \
    --option="interfaces=lo" --option="bind interfaces only=yes" >"$DIR/provision.log" 2>&1 \
    || { echo "samba-ad.sh: provisioning failed; see $DIR/provision.log" >&2; tail -20 "$DIR/provision.log" >&2; exit 1; }
  # Everything under DIR, only the LDAP service, simple binds without TLS, and no password complexity (tests).
  mkdir -p "$DIR/run" "$DIR/log"
  sed -i "/^\[global\]/a\\
\tldap server require strong auth = no\\
\tserver services = ldap\\
\tpid directory = $DIR/run\\
\tncalrpc dir = $DIR/run/ncalrpc\\
\twinbindd socket directory = $DIR/run/winbindd\\
\tlog file = $DIR/log/log.%m\\
\tlog level = 1" "$DIR/etc/smb.conf"
  sed -i '/^\s*server services = s3fs/d' "$DIR/etc/smb.conf"
  samba-tool domain passwordsettings set --complexity=off --min-pwd-length=1 --min-pwd-age=0 --max-pwd-age=0 \
    -s "$DIR/etc/smb.conf" >/dev/null
  # Its own process group, so that stop ends every child with it.
  setsid samba -i -M single -s "$DIR/etc/smb.conf" </dev/null >"$DIR/samba.log" 2>&1 &
  echo $! > "$DIR/pid"
  for _ in $(seq 1 300); do
    ldap_up && exit 0
    kill -0 "$(cat "$DIR/pid")" 2>/dev/null || break
    sleep 0.2
  done
  echo "samba-ad.sh: samba did not answer LDAP within 60 s; see $DIR/samba.log" >&2
  tail -30 "$DIR/samba.log" >&2
  "$0" stop "$DIR" || true
  exit 1 ;;
stop)
  [ -f "$DIR/pid" ] || exit 0
  pid=$(cat "$DIR/pid")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || { rm -f "$DIR/pid"; exit 0; }
  for _ in $(seq 1 100); do
    kill -0 -- "-$pid" 2>/dev/null || { rm -f "$DIR/pid"; exit 0; }
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$DIR/pid" ;;
tool)
  shift 2
  exec samba-tool "$@" -s "$DIR/etc/smb.conf" ;;
*) echo "usage: $0 start DIR | stop DIR | tool DIR ARGS..." >&2; exit 2 ;;
esac
