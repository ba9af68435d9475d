#!/usr/bin/env bash
# testenv.sh COMMAND...: run COMMAND with a real redis-server and a real MQTT
# broker (Mosquitto) started on free loopback ports, and stop them afterwards.
#
# The tests find them through FLEETJOBS_TEST_REDIS_URL and
# FLEETJOBS_TEST_MQTT_URL, a Redis Cluster of three nodes through
# FLEETJOBS_TEST_REDIS_CLUSTER_URL, and a Sentinel of the first Redis through
# FLEETJOBS_TEST_REDIS_SENTINEL_URL. Missing servers are installed with apt-get (CI runs
# as root on a Debian machine). Nothing listens beyond 127.0.0.1.
set -euo pipefail

need() { # need BINARY PACKAGE
	if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ]; then
		echo "testenv: $1 not found, installing $2 with apt-get" >&2
		if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
		$SUDO apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$2" >/dev/null
	fi
}
need redis-server redis-server
need mosquitto mosquitto
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

# Ports are drawn below the kernel's ephemeral range, where outgoing
# connections take theirs: after a benchmark's tens of thousands of short
# connections that range is full of sockets in TIME_WAIT, and binding one of
# its ports fails. A Cluster node also binds PORT+10000 (its bus), so that
# must stay below the range too.
read -r eph_low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || eph_low=32768
port_lo=10000
port_span=$((eph_low - 10000 - port_lo))
if [ "$port_span" -lt 2000 ]; then port_lo=20000; port_span=30000; fi

free_port() { # a port nothing on 127.0.0.1 accepts on, below the ephemeral range
	local p
	for _ in $(seq 1 200); do
		p=$((port_lo + RANDOM % port_span))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
	done
	echo "testenv: no free port found" >&2
	return 1
}

dir=$(mktemp -d -t fleetjobs-testenv.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# wait_port PORT PID: until something accepts on 127.0.0.1:PORT (0), or the
# process PID has exited or 10 s have passed (1).
wait_port() {
	for _ in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

start_redis() { # start_redis PORT: sets PID
	redis-server --bind 127.0.0.1 --port "$1" --save "" --appendonly no \
		--dir "$dir" --logfile "$dir/redis.log" --daemonize no >/dev/null 2>&1 &
	PID=$!
}

start_clusternode() { # start_clusternode PORT: a Redis Cluster node (bus on PORT+10000); sets PID
	redis-server --bind 127.0.0.1 --port "$1" --save "" --appendonly no \
		--cluster-enabled yes --cluster-config-file "nodes-$1.conf" \
		--dir "$dir" --logfile "$dir/clusternode.log" --daemonize no >/dev/null 2>&1 &
	PID=$!
}

start_sentinel() { # start_sentinel PORT: a Sentinel of the Redis on $redis_port, master "fjmaster"; sets PID
	cat >"$dir/sentinel-$1.conf" <<CONF
bind 127.0.0.1
port $1
dir $dir
sentinel monitor fjmaster 127.0.0.1 $redis_port 1
CONF
	redis-server "$dir/sentinel-$1.conf" --sentinel --logfile "$dir/sentinel.log" >/dev/null 2>&1 &
	PID=$!
}

start_mosquitto() { # start_mosquitto PORT: sets PID
	cat >"$dir/mosquitto.conf" <<CONF
listener $1 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
CONF
	"$MOSQUITTO" -c "$dir/mosquitto.conf" >/dev/null 2>"$dir/mosquitto.log" &
	PID=$!
}

# start NAME: starts NAME on a free port, trying another port when the one
# picked was taken in the meantime (other test runs on the machine); sets
# the global PORT.
start() {
	for _ in 1 2 3 4 5; do
		PORT=$(free_port)
		"start_$1" "$PORT"
		pids+=("$PID")
		if wait_port "$PORT" "$PID"; then return 0; fi
		kill "$PID" 2>/dev/null || true
	done
	echo "testenv: $1 did not start; its log:" >&2
	cat "$dir/$1.log" >&2 || true
	exit 1
}

start redis
redis_port=$PORT
start mosquitto
mqtt_port=$PORT

# A Sentinel watching that Redis as master "fjmaster", for the tests of
# FLEETJOBS_REDIS_URL's Sentinel form.
start sentinel
sentinel_port=$PORT
for i in $(seq 1 100); do
	if redis-cli -h 127.0.0.1 -p "$sentinel_port" sentinel get-master-addr-by-name fjmaster 2>/dev/null | grep -q "$redis_port"; then break; fi
	if [ "$i" = 100 ]; then echo "testenv: the Sentinel does not know its master" >&2; exit 1; fi
	sleep 0.1
done

# A Redis Cluster of three masters, for the tests of FLEETJOBS_REDIS_URL's
# cluster form.
cluster=()
for _ in 1 2 3; do
	start clusternode
	cluster+=("127.0.0.1:$PORT")
done
redis-cli --cluster create "${cluster[@]}" --cluster-replicas 0 --cluster-yes >"$dir/cluster-create.log" 2>&1 || {
	echo "testenv: redis-cli --cluster create failed:" >&2
	cat "$dir/cluster-create.log" >&2
	exit 1
}
for node in "${cluster[@]}"; do
	for i in $(seq 1 100); do
		if redis-cli -h 127.0.0.1 -p "${node#*:}" cluster info 2>/dev/null | grep -q "cluster_state:ok"; then break; fi
		if [ "$i" = 100 ]; then echo "testenv: the Redis Cluster did not become ready" >&2; exit 1; fi
		sleep 0.1
	done
done

export FLEETJOBS_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/0"
export FLEETJOBS_TEST_MQTT_URL="mqtt://127.0.0.1:$mqtt_port"
export FLEETJOBS_TEST_REDIS_CLUSTER_URL="redis://$(IFS=,; echo "${cluster[*]}")"
export FLEETJOBS_TEST_REDIS_SENTINEL_URL="redis://127.0.0.1:$sentinel_port/0?master=fjmaster"
echo "testenv: redis on $FLEETJOBS_TEST_REDIS_URL, mosquitto on $FLEETJOBS_TEST_MQTT_URL, redis cluster on $FLEETJOBS_TEST_REDIS_CLUSTER_URL, sentinel on $FLEETJOBS_TEST_REDIS_SENTINEL_URL" >&2
"$@"
