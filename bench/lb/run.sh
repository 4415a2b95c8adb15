#!/usr/bin/env bash
# Benchmark of haplane's balancer *through the daemon* (`haplane run`, a worker's node-local
# balancer) against haproxy 2.6 and direct nginx, all in one run, same nginx backend.
#
# Loopback only; run as root (it raises the fd limit for the reconnect storm). Needs nginx,
# haproxy, wrk (scripts/deps) and builds haplane and the bench clients in release mode.
#
# Usage: bench/lb/run.sh [seconds-per-figure]
# Env:   ROUNDS (3)       interleaved rounds per figure; the median is printed
#        THREADS ("1 2")  proxy threads per phase: haproxy nbthread N, haplane loadBalancer.threads N;
#                         "" skips the throughput phases (storm and memory only)
#        WRK_CONN (64)    wrk connections (8 for the 1 MiB objects)
#        STORM (10000)    reconnect-storm client connections; 0 skips the storm
#        STORM_ROUNDS (2) storms per proxy, alternating; the median is printed
#        IDLE_POINTS ("4000 8500")  idle connections for the memory figure; "" skips it
#        PORT_BASE (18080)
#        PERF (unset)     a directory: record `perf record -g` of haplane during each
#                         throughput figure of the first phase into it (needs linux-perf)
#
# Under the team's measurement lock: flock /tmp/haplane-measure.lock bench/lb/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dur=${1:-5}
rounds=${ROUNDS:-3}
conns=${WRK_CONN:-64}
phases=${THREADS-"1 2"}
storm=${STORM:-10000}
storm_rounds=${STORM_ROUNDS:-2}
idle_points=${IDLE_POINTS-"4000 8500"}
base=${PORT_BASE:-18080}
perf_dir=${PERF:-}
nginx_port=$base; hap_port=$((base + 1)); lb_port=$((base + 2)); nginx2_port=$((base + 3))
status_port=$((base + 10))

for p in $nginx_port $hap_port $lb_port $nginx2_port $status_port; do
  if ss -ltnH "sport = :$p" | grep -q .; then echo "port $p busy; set PORT_BASE" >&2; exit 1; fi
done
for t in nginx haproxy wrk; do command -v $t >/dev/null || { echo "missing $t (scripts/deps)" >&2; exit 1; }; done
if [ -n "$perf_dir" ]; then command -v perf >/dev/null || { echo "PERF needs perf (linux-perf, scripts/deps)" >&2; exit 1; }; fi

(cd "$root" && cargo build -q --release -p haplane --bin haplane && cargo build -q --release -p lb --examples)
target=${CARGO_TARGET_DIR:-$root/target}
haplane="$target/release/haplane"
ex="$target/release/examples"

work=$(mktemp -d /tmp/lb-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# A proxy needs two descriptors per client connection; the storm holds 10 000 of them.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
# haproxy refuses to start when maxconn does not fit the limit (it needs 2 per connection, 2 per
# pipe and ~15 more); where the hard limit cannot be raised (no CAP_SYS_RESOURCE: 20 000 here)
# both proxies get the same smaller ceiling and the storm shrinks to what fits.
fd_limit=$(ulimit -n)
hap_maxpipes=100
hap_maxconn=40000
if [ $((2 * hap_maxconn + 2 * hap_maxpipes + 100)) -gt "$fd_limit" ]; then
  hap_maxconn=$(((fd_limit - 2 * hap_maxpipes - 100) / 2))
fi
if [ "$storm" -gt $((hap_maxconn - 100)) ]; then
  echo "note: RLIMIT_NOFILE is $fd_limit, so haproxy maxconn is $hap_maxconn and the storm has $((hap_maxconn - 100)) clients, not $storm" >&2
  storm=$((hap_maxconn - 100))
fi

# Backends: one nginx worker each, static answers, a 1 MiB object.
mkdir -p "$work/www"
head -c 1048576 /dev/urandom > "$work/www/big"
nginx_conf() { # name port
  cat > "$work/$1.conf" <<NGX
daemon off; master_process off; worker_rlimit_nofile 65536;
pid $work/$1.pid; error_log $work/$1.err warn;
events { worker_connections 60000; multi_accept on; }
http {
  access_log off; keepalive_timeout 300s; keepalive_requests 100000000;
  client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f;
  uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  sendfile on; tcp_nopush on;
  server {
    listen 127.0.0.1:$2 backlog=4096;
    location = / { return 200 "ok\n"; }
    location = /readyz { return 200 "ok\n"; }
    location / { root $work/www; }
  }
}
NGX
}
start_nginx() { # name port → pid in $REPLY
  nginx_conf "$1" "$2"
  nginx -p "$work" -e "$work/$1.err" -c "$work/$1.conf" & REPLY=$!; pids+=("$REPLY")
  wait_port "$2"
}
wait_port() { for _ in $(seq 200); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.05; done; echo "port $1 never listened" >&2; exit 1; }
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# haproxy: tcp mode, roundrobin, httpchk, splice-auto; retries with redispatch for the storm.
start_haproxy() { # threads backends... → pid in $REPLY
  local threads=$1; shift
  {
    echo "global"
    echo "  nbthread $threads"
    echo "  maxconn $hap_maxconn"
    echo "  maxpipes $hap_maxpipes"
    echo "defaults"
    echo "  mode tcp"
    echo "  timeout connect 1s"
    echo "  timeout client 1h"
    echo "  timeout server 1h"
    echo "  option splice-auto"
    echo "  option redispatch"
    echo "  retries 3"
    echo "listen api"
    echo "  bind 127.0.0.1:$hap_port"
    echo "  balance roundrobin"
    echo "  option httpchk GET /readyz"
    local i=0
    for b in "$@"; do i=$((i + 1)); echo "  server n$i $b check inter 1s rise 2 fall 2"; done
  } > "$work/haproxy.cfg"
  haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 & REPLY=$!; pids+=("$REPLY")
  wait_port "$hap_port"
}

# haplane: the daemon as a worker's node-local balancer; same shape (round-robin, HTTP check of
# /readyz every 1 s, rise 2, fall 2, 1 s connect timeout).
start_haplane() { # threads backends... → pid in $REPLY
  local threads=$1; shift
  {
    echo "cluster: bench"
    echo "nodes:"
    echo "  - {name: m1, address: 198.18.0.1, roles: [master]}"
    echo "  - {name: w1, address: 198.18.0.2, roles: [worker]}"
    echo "vip: {address: 198.18.0.100/24, vrid: 51}"
    echo "status: {listen: \"127.0.0.1:$status_port\"}"
    echo "stateDir: $work/state"
    echo "loadBalancer:"
    echo "  threads: $threads"
    echo "  nodeLocalListen: [\"127.0.0.1:$lb_port\"]"
    echo "  backends:"
    for b in "$@"; do echo "    - {address: \"$b\"}"; done
    echo "  healthCheck: {type: http, path: /readyz, interval: 1s, timeout: 1s, rise: 2, fall: 2}"
    echo "  connectTimeout: 1s"
  } > "$work/cluster.yaml"
  HAPLANE_LOG=warn "$haplane" run --config "$work/cluster.yaml" --node w1 </dev/null >"$work/haplane.log" 2>&1 & REPLY=$!; pids+=("$REPLY")
  wait_port "$lb_port"
}

# wrk output → numbers
to_mb() { awk '{v=$1; u=$1; sub(/[0-9.]+/,"",u); sub(/[A-Za-z]+$/,"",v);
  f=(u=="GB")?1024:(u=="MB")?1:(u=="KB")?1/1024:1/1048576; printf "%.1f", v*f}'; }
to_ms() { awk '{v=$1; u=$1; sub(/[0-9.]+/,"",u); sub(/[a-z]+$/,"",v);
  f=(u=="s")?1000:(u=="ms")?1:(u=="us")?0.001:1; printf "%.2f", v*f}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run_wrk() { # label port pid path extra-args... → "req/s mb/s p99ms cpu-us-per-request"
  local label=$1 port=$2 pid=$3 path=$4; shift 4
  local t0; t0=$(cpu_ticks "$pid")
  local perf_pid=""
  if [ -n "$perf_dir" ] && [ "$label" != "-" ]; then
    perf record -q -g -p "$pid" -o "$perf_dir/$label.data" >/dev/null 2>&1 & perf_pid=$!
  fi
  local out; out=$(wrk -t1 -c"${WRK_C:-$conns}" -d"${dur}s" --latency "$@" "http://127.0.0.1:$port$path" 2>&1)
  [ -n "$perf_pid" ] && { kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; }
  local rps mb p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  mb=$(awk '/^Transfer\/sec/ {print $2}' <<<"$out" | to_mb)
  p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
  local errs; errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  [ -n "$errs" ] && echo "  (port $port $path: $errs)" >&2
  local t1; t1=$(cpu_ticks "$pid")
  local cpu; cpu=$(awk -v r="$rps" -v t=$((t1 - t0)) -v d="$dur" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.1f", (r > 0) ? t * 1e6 / hz / (r * d) : 0 }')
  echo "$rps $mb $p99 $cpu"
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "-" }'; }

start_nginx nginx "$nginx_port"; nginx_pid=$REPLY
declare -A R S
echo "haplane balancer benchmark: loopback, $(nproc) cores, wrk -t1 -c$conns (8 for 1 MiB), median of $rounds interleaved rounds x ${dur}s, nginx 1 worker"
echo "haproxy $(haproxy -v | awk 'NR==1{print $3}'): tcp mode, splice-auto; haplane $("$haplane" --version | awk '{print $2, $3, $4}'): haplane run (node-local balancer), splice on"
first_phase=1
for threads in $phases; do
  start_haproxy "$threads" "127.0.0.1:$nginx_port"; hap_pid=$REPLY
  start_haplane "$threads" "127.0.0.1:$nginx_port"; lb_pid=$REPLY
  sleep 2.5 # both proxies see the backend healthy (rise 2 x 1 s)
  # Other work may share the cores: each figure is measured in $rounds rounds, the targets in
  # rotated order each round, and the median is reported.
  S=()
  targets=(direct haproxy haplane)
  for ((r = 0; r < rounds; r++)); do
    for ((k = 0; k < 3; k++)); do
      t=${targets[$(((k + r) % 3))]}
      case $t in direct) port=$nginx_port pid=$nginx_pid;; haproxy) port=$hap_port pid=$hap_pid;;
        haplane) port=$lb_port pid=$lb_pid;; esac
      label=-
      [ "$t" = haplane ] && [ $first_phase = 1 ] && [ $r = 0 ] && label=haplane
      read -r a _ b c <<<"$(run_wrk "${label/haplane/keepalive}" $port $pid /)"
      S[$t.ka]+=" $a"; S[$t.p99]+=" $b"; S[$t.cpuka]+=" $c"
      read -r a _ b c <<<"$(run_wrk "${label/haplane/newconn}" $port $pid / -H 'Connection: close')"
      S[$t.close]+=" $a"; S[$t.p99c]+=" $b"; S[$t.cpuclose]+=" $c"
      read -r _ a b c <<<"$(WRK_C=8 run_wrk "${label/haplane/bulk}" $port $pid /big)"
      S[$t.bulk]+=" $a"; S[$t.p99b]+=" $b"; S[$t.cpubulk]+=" $c"
    done
  done
  R=()
  for key in "${!S[@]}"; do R[$key]=$(median <<<"${S[$key]}"); done
  echo
  echo "== $threads thread(s) each: haproxy nbthread $threads, haplane loadBalancer.threads $threads"
  printf "%-34s %12s %12s %12s %16s\n" figure direct haproxy haplane "haplane/haproxy"
  row() { printf "%-34s %12s %12s %12s %16s\n" "$1" "${R[direct.$2]}" "${R[haproxy.$2]}" "${R[haplane.$2]}" "$(ratio "${R[haplane.$2]}" "${R[haproxy.$2]}")"; }
  row "keep-alive req/s" ka
  row "new connection per request req/s" close
  row "1 MiB objects MB/s" bulk
  row "p99 latency keep-alive ms" p99
  row "p99 latency new-conn ms" p99c
  row "p99 latency 1 MiB ms" p99b
  row "CPU us/request keep-alive" cpuka
  row "CPU us/request new-conn" cpuclose
  row "CPU us/request 1 MiB" cpubulk
  if [ $first_phase = 1 ] && [ -n "$idle_points" ]; then
    # RSS of a proxy holding N idle client connections (plus N backend connections).
    rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
    idle_rss() { # pid port n → "got kB"
      local pid=$1 port=$2 n=$3
      coproc IDLE { "$ex/idle_clients" "127.0.0.1:$port" "$n"; }
      local line; read -r line <&"${IDLE[0]}"
      local got=${line#READY }
      sleep 1
      local kb; kb=$(rss_kb "$pid")
      exec {IDLE[1]}>&-
      wait "$IDLE_PID" 2>/dev/null || true
      sleep 1
      echo "$got $kb"
    }
    declare -A M
    for t in haproxy haplane; do
      case $t in haproxy) pid=$hap_pid port=$hap_port;; haplane) pid=$lb_pid port=$lb_port;; esac
      M[$t.base]=$(rss_kb "$pid")
      for n in $idle_points; do M[$t.$n]=$(idle_rss "$pid" "$port" "$n"); done
    done
    echo
    echo "RSS with idle client connections (each also holds a backend connection); haplane is the whole daemon:"
    printf "%-12s %10s" proxy "base kB"; for n in $idle_points; do printf " %16s" "$n idle kB"; done
    printf " %14s\n" "B/conn pair"
    for t in haproxy haplane; do
      printf "%-12s %10s" $t "${M[$t.base]}"
      first=""; last=""
      for n in $idle_points; do
        read -r got kb <<<"${M[$t.$n]}"; printf " %16s" "$kb ($got)"
        [ -z "$first" ] && first="$got $kb"; last="$got $kb"
      done
      read -r n1 k1 <<<"$first"; read -r n2 k2 <<<"$last"
      awk -v n1="$n1" -v k1="$k1" -v n2="$n2" -v k2="$k2" 'BEGIN { printf " %14.0f\n", (n2>n1)?(k2-k1)*1024/(n2-n1):0 }'
    done
  fi
  stop_pid "$hap_pid"; stop_pid "$lb_pid"
  first_phase=0
done
stop_pid "$nginx_pid"

# Reconnect storm: $storm keep-alive clients all on backend A; B starts; A is killed. How long
# until every client has noticed, reconnected through the proxy and been answered (by B)?
if [ "$storm" -gt 0 ]; then
  # The kernel's counters of listen-queue overflows and aborted connections, for the storm's
  # stderr line: where a client's failed attempt came from when no proxy counter says.
  kernel_counters() { nstat -asz TcpExtListenOverflows TcpExtListenDrops TcpExtTCPAbortOnData TcpExtTCPAbortOnClose TcpExtSyncookiesSent TcpExtTCPReqQFullDrop TcpExtTCPBacklogDrop 2>/dev/null | awk 'NR > 1 && $1 ~ /^TcpExt/ { print $1, $2 }'; }
  kernel_delta() { # before after → "name +delta ..." for the counters that moved
    join <(sort <<<"$1") <(sort <<<"$2") | awk '$3 != $2 { printf "%s +%d ", substr($1, 7), $3 - $2 }'
  }
  storm_once() { # proxy → "answered all_ms p50 p99 failed connect reset eof other"
    local proxy=$1 port pid a_pid b_pid k0
    start_nginx nginx "$nginx_port"; a_pid=$REPLY
    case $proxy in
      haproxy) start_haproxy 1 "127.0.0.1:$nginx_port" "127.0.0.1:$nginx2_port"; pid=$REPLY; port=$hap_port;;
      haplane) start_haplane 1 "127.0.0.1:$nginx_port" "127.0.0.1:$nginx2_port"; pid=$REPLY; port=$lb_port;;
    esac
    sleep 3 # B (not running) is marked down by both (fall 2 x 1 s)
    coproc STORM { "$ex/storm_clients" "127.0.0.1:$port" "$storm"; }
    local line; read -r line <&"${STORM[0]}"
    [ "$line" = "READY $storm" ] || echo "  ($proxy: only ${line#READY } of $storm clients connected)" >&2
    start_nginx nginx2 "$nginx2_port"; b_pid=$REPLY
    sleep 3 # B is marked up by both (rise 2 x 1 s)
    k0=$(kernel_counters)
    echo ARM >&"${STORM[1]}"
    read -r line <&"${STORM[0]}" # ARMED
    kill -KILL "$a_pid"; wait "$a_pid" 2>/dev/null || true
    read -r line <&"${STORM[0]}"
    exec {STORM[1]}>&-
    wait "$STORM_PID" 2>/dev/null || true
    local d; read -r _ _ _ _ _ _ d <<<"$line"
    echo "  ($proxy storm: failed attempts by what the client saw: connect/reset/eof/other ${d// //}; kernel: $(kernel_delta "$k0" "$(kernel_counters)"))" >&2
    if [ "$proxy" = haplane ]; then
      # Where haplane's failed attempts came from: clients it closed because no backend could
      # be connected, and connects it judged overloaded or failed (stderr, one line per storm).
      local st; st=$(curl -s "http://127.0.0.1:$status_port/status" || true)
      echo "  (haplane storm: $(grep -o '"failedConnections": *[0-9]*' <<<"$st" | head -1)," \
        "$(grep -o '"connectErrors": *[0-9]*' <<<"$st" | paste -sd' ')," \
        "$(grep -o '"connectsOverloaded": *[0-9]*' <<<"$st" | paste -sd' ')," \
        "$(grep -o '"sessionsClosedOnDown": *[0-9]*' <<<"$st" | paste -sd' '))" >&2
    fi
    stop_pid "$pid"; stop_pid "$b_pid"
    echo "${line#DONE }"
  }
  declare -A T
  for ((r = 0; r < storm_rounds; r++)); do
    for proxy in haproxy haplane; do
      [ $((r % 2)) = 1 ] && proxy=$([ "$proxy" = haproxy ] && echo haplane || echo haproxy)
      read -r got all p50 p99 failed _ <<<"$(storm_once "$proxy")"
      T[$proxy.got]+=" $got"; T[$proxy.all]+=" $all"; T[$proxy.p50]+=" $p50"; T[$proxy.p99]+=" $p99"; T[$proxy.failed]+=" $failed"
    done
  done
  echo
  echo "== reconnect storm: $storm established clients, their backend killed (SIGKILL), one thread each, median of $storm_rounds"
  printf "%-40s %12s %12s %16s\n" figure haproxy haplane "haplane/haproxy"
  srow() { local a b; a=$(median <<<"${T[haproxy.$2]}"); b=$(median <<<"${T[haplane.$2]}"); printf "%-40s %12s %12s %16s\n" "$1" "$a" "$b" "$(ratio "$b" "$a")"; }
  srow "clients answered again" got
  srow "all reconnected and answered, ms" all
  srow "p50 client back, ms" p50
  srow "p99 client back, ms" p99
  srow "failed attempts (retried after 10 ms)" failed
fi
