#!/usr/bin/env bash
# Benchmark of haplane's L4 balancer against direct nginx and haproxy 2.6, in one run.
# Loopback only. Needs nginx, haproxy, wrk (apt-get install -y wrk) and a release build of
# the examples (done here). Usage: bench/lb/run.sh [seconds-per-figure]
# Env: ROUNDS (3), WRK_CONN (64), LB_THREADS (1), IDLE_POINTS ("4000 8500"), PORT_BASE (18080).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dur=${1:-5}
rounds=${ROUNDS:-3}
conns=${WRK_CONN:-64}
lb_threads=${LB_THREADS:-1}
idle_points=${IDLE_POINTS:-"4000 8500"}
base=${PORT_BASE:-18080}
nginx_port=$base; hap_port=$((base + 1)); lb_port=$((base + 2))
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-lb}

for p in $nginx_port $hap_port $lb_port; do
  if ss -ltnH "sport = :$p" | grep -q .; then echo "port $p busy; set PORT_BASE" >&2; exit 1; fi
done
for t in nginx haproxy wrk; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done

(cd "$root" && cargo build -q --release -p haplane-lb --examples)
ex="$CARGO_TARGET_DIR/release/examples"

work=$(mktemp -d /tmp/lb-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

# Backend: one nginx worker, static answers, a 1 MiB object.
mkdir -p "$work/www"
head -c 1048576 /dev/urandom > "$work/www/big"
cat > "$work/nginx.conf" <<NGX
daemon off; master_process off; worker_rlimit_nofile 65536;
pid $work/nginx.pid; error_log $work/nginx.err warn;
events { worker_connections 60000; multi_accept on; }
http {
  access_log off; keepalive_timeout 300s; keepalive_requests 100000000;
  client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f;
  uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  sendfile on; tcp_nopush on;
  server {
    listen 127.0.0.1:$nginx_port backlog=4096;
    location = / { return 200 "ok\n"; }
    location = /readyz { return 200 "ok\n"; }
    location / { root $work/www; }
  }
}
NGX
nginx -p "$work" -e "$work/nginx.err" -c "$work/nginx.conf" & nginx_pid=$!; pids+=($nginx_pid)

# haproxy: tcp mode, roundrobin, httpchk, splice-auto, one thread.
cat > "$work/haproxy.cfg" <<HAP
global
  nbthread 1
  maxconn 8900
  maxpipes 1000
defaults
  mode tcp
  timeout connect 1s
  timeout client 1h
  timeout server 1h
  option splice-auto
listen api
  bind 127.0.0.1:$hap_port
  balance roundrobin
  option httpchk GET /readyz
  server n1 127.0.0.1:$nginx_port check inter 1s rise 2 fall 2
HAP
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 & hap_pid=$!; pids+=($hap_pid)

# haplane: same shape (round-robin, HTTP check of /readyz).
"$ex/lb_bench" --listen 127.0.0.1:$lb_port --backend 127.0.0.1:$nginx_port --until-signal \
  --threads "$lb_threads" --check http </dev/null >"$work/lb.log" 2>&1 & lb_pid=$!; pids+=($lb_pid)

for p in $nginx_port $hap_port $lb_port; do
  for _ in $(seq 100); do ss -ltnH "sport = :$p" | grep -q . && break; sleep 0.1; done
done
sleep 2.5 # let both proxies see the backend healthy (rise 2 x 1 s)

# wrk output → numbers
to_mb() { awk '{v=$1; u=$1; sub(/[0-9.]+/,"",u); sub(/[A-Za-z]+$/,"",v);
  f=(u=="GB")?1024:(u=="MB")?1:(u=="KB")?1/1024:1/1048576; printf "%.1f", v*f}'; }
to_ms() { awk '{v=$1; u=$1; sub(/[0-9.]+/,"",u); sub(/[a-z]+$/,"",v);
  f=(u=="s")?1000:(u=="ms")?1:(u=="us")?0.001:1; printf "%.2f", v*f}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run_wrk() { # port pid path extra-args... → "req/s mb/s p99ms cpu-us-per-request"
  local port=$1 pid=$2 path=$3; shift 3
  local t0; t0=$(cpu_ticks "$pid")
  local out; out=$(wrk -t1 -c"${WRK_C:-$conns}" -d"${dur}s" --latency "$@" "http://127.0.0.1:$port$path" 2>&1)
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

# Other work may share the cores: every figure is measured in $rounds rounds, the targets
# in rotated order each round, and the median is reported.
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
declare -A R S
targets=(direct haproxy haplane)
for ((r = 0; r < rounds; r++)); do
  for ((k = 0; k < 3; k++)); do
    t=${targets[$(((k + r) % 3))]}
    case $t in direct) port=$nginx_port pid=$nginx_pid;; haproxy) port=$hap_port pid=$hap_pid;;
      haplane) port=$lb_port pid=$lb_pid;; esac
    read -r a _ b c <<<"$(run_wrk $port $pid /)"
    S[$t.ka]+=" $a"; S[$t.p99]+=" $b"; S[$t.cpuka]+=" $c"
    read -r a _ b c <<<"$(run_wrk $port $pid / -H 'Connection: close')"
    S[$t.close]+=" $a"; S[$t.p99c]+=" $b"; S[$t.cpuclose]+=" $c"
    read -r _ a _ c <<<"$(WRK_C=8 run_wrk $port $pid /big)"
    S[$t.bulk]+=" $a"; S[$t.cpubulk]+=" $c"
  done
done
for key in "${!S[@]}"; do R[$key]=$(median <<<"${S[$key]}"); done

# RSS of a proxy holding N idle client connections (plus N backend connections).
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
idle_rss() { # pid port n → kB
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
  for n in $idle_points; do
    read -r got kb <<<"$(idle_rss "$pid" "$port" "$n")"
    M[$t.$n]="$got $kb"
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "-" }'; }
echo
echo "haplane L4 balancer benchmark: loopback, $(nproc) cores, wrk -t1 -c$conns (8 for 1 MiB), median of $rounds x ${dur}s, nginx 1 worker"
echo "haplane: $lb_threads runtime thread(s), splice on; haproxy $(haproxy -v | awk 'NR==1{print $3}'): nbthread 1, splice-auto"
printf "\n%-34s %12s %12s %12s %16s\n" figure direct haproxy haplane "haplane/haproxy"
row() { printf "%-34s %12s %12s %12s %16s\n" "$1" "${R[direct.$2]}" "${R[haproxy.$2]}" "${R[haplane.$2]}" "$(ratio "${R[haplane.$2]}" "${R[haproxy.$2]}")"; }
row "keep-alive req/s" ka
row "new connection per request req/s" close
row "1 MiB objects MB/s" bulk
row "p99 latency keep-alive ms" p99
row "p99 latency new-conn ms" p99c
row "CPU us/request keep-alive" cpuka
row "CPU us/request new-conn" cpuclose
row "CPU us/request 1 MiB" cpubulk
echo "(CPU columns: CPU time of the serving process — nginx for direct, the proxy otherwise — per"
echo " request; steadier than req/s when other work shares the 2 cores. Lower is better.)"
echo
echo "RSS with idle client connections (each also holds a backend connection):"
printf "%-12s %10s" proxy "base kB"; for n in $idle_points; do printf " %16s" "$n idle kB"; done
printf " %14s %14s %14s\n" "B/conn" "@10k kB (est)" "@50k kB (est)"
for t in haproxy haplane; do
  printf "%-12s %10s" $t "${M[$t.base]}"
  first=""; last=""
  for n in $idle_points; do
    read -r got kb <<<"${M[$t.$n]}"; printf " %16s" "$kb ($got)"
    [ -z "$first" ] && first="$got $kb"; last="$got $kb"
  done
  read -r n1 k1 <<<"$first"; read -r n2 k2 <<<"$last"
  awk -v n1="$n1" -v k1="$k1" -v n2="$n2" -v k2="$k2" 'BEGIN {
    s=(n2>n1)?(k2-k1)/(n2-n1):0; b=k2-s*n2;
    printf " %14.0f %14.0f %14.0f\n", s*1024, b+s*10000, b+s*50000 }'
done
echo "(10k/50k rows are extrapolated from the measured points when the fd hard limit, $(ulimit -Hn), forbids"
echo " holding that many: a proxy needs two descriptors per client connection.)"
