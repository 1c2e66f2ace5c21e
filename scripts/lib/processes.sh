# Process helpers shared by scripts/test.sh and scripts/bench.sh (sourced; not run). The caller defines `log` and
# STOP_TIMEOUT (seconds); stop_litellm_peer also LITELLM_PID, LITELLM_PIDFILE_BEFORE and LITELLM_PEER_ROOT. Only
# /proc is read, so procps is not needed.

alive() { # pid → true while the process exists and is not a zombie
  [ -r "/proc/$1/stat" ] || return 1
  local stat; stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

descendants() { # pid → every descendant pid (from /proc, so procps is not needed)
  local parent=$1 d stat ppid
  for d in /proc/[0-9]*; do
    stat=$(cat "$d/stat" 2>/dev/null) || continue
    stat=${stat##*) }
    ppid=$(printf '%s' "$stat" | cut -d' ' -f2)
    if [ "$ppid" = "$parent" ]; then
      echo "${d#/proc/}"
      descendants "${d#/proc/}"
    fi
  done
}

stop_pid() { # pid name → TERM, wait up to STOP_TIMEOUT s, then KILL
  local pid=$1 name=$2 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
    alive "$pid" || { log "$name (pid $pid) stopped"; return 0; }
    sleep 0.2
  done
  log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

free_port() { # a free loopback TCP port, chosen by the kernel
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

stop_litellm_peer() { # the LiteLLM of LITELLM_PID, its children, and LITELLM_PEER_ROOT/litellm.pid put back
  [ -n "$LITELLM_PID" ] || return 0
  # Its children (the Prisma query-engine shim under node) are stopped too, once LiteLLM itself is gone.
  local kids k
  local -A cmd=()
  kids=$(descendants "$LITELLM_PID")
  for k in $kids; do cmd[$k]=$({ tr '\0' ' ' <"/proc/$k/cmdline"; } 2>/dev/null || true); done
  stop_pid "$LITELLM_PID" "LiteLLM"
  for k in $kids; do # still running, and still the same program (not a reused pid)
    if [ -n "${cmd[$k]}" ] && [ "$({ tr '\0' ' ' <"/proc/$k/cmdline"; } 2>/dev/null || true)" = "${cmd[$k]}" ]; then
      stop_pid "$k" "LiteLLM's child ${cmd[$k]:0:60}"
    fi
  done
  local pidfile=$LITELLM_PEER_ROOT/litellm.pid
  if [ -n "$LITELLM_PIDFILE_BEFORE" ] && alive "$LITELLM_PIDFILE_BEFORE"; then
    echo "$LITELLM_PIDFILE_BEFORE" >"$pidfile"
  elif [ "$(cat "$pidfile" 2>/dev/null)" = "$LITELLM_PID" ]; then
    rm -f "$pidfile"
  fi
  LITELLM_PID=
}
