# Start, command and stop the Kafka test broker (test/kafka_mock_broker).

BROKER_BIN=${BROKER_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/kafka_mock_broker}

# broker_start [-n BROKERS] TOPIC:PARTITIONS...: sets BROKER_BOOTSTRAP
broker_start() {
	BROKER_DIR=$(mktemp -d)
	"$BROKER_BIN" -b "$BROKER_DIR/bootstrap" -c "$BROKER_DIR/control" "$@" \
		>"$BROKER_DIR/out" 2>&1 &
	BROKER_PID=$!
	local i
	for i in $(seq 100); do
		[ -s "$BROKER_DIR/bootstrap" ] && break
		sleep 0.05
	done
	BROKER_BOOTSTRAP=$(cat "$BROKER_DIR/bootstrap")
	trap broker_stop EXIT
}

# broker_cmd COMMAND: apply a fault command; prints the broker's answer
broker_cmd() {
	local before after i
	before=$(grep -c -E '^(ok|error) ' "$BROKER_DIR/out")
	echo "$*" >"$BROKER_DIR/control"
	for i in $(seq 200); do
		after=$(grep -c -E '^(ok|error) ' "$BROKER_DIR/out")
		if [ "$after" -gt "$before" ]; then
			grep -E '^(ok|error) ' "$BROKER_DIR/out" | tail -n 1
			return 0
		fi
		sleep 0.05
	done
	echo "timeout $*"
	return 1
}

broker_stop() {
	if [ -n "${BROKER_PID:-}" ]; then
		kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
		BROKER_PID=
	fi
	[ -n "${BROKER_DIR:-}" ] && rm -rf "$BROKER_DIR"
}

# produce_json TOPIC FROM TO: JSON events with ids FROM..TO, keyed by id so
# that the key hash spreads them evenly over the partitions (kcat's random
# partitioner often puts a whole run into one partition)
produce_json() {
	seq "$2" "$3" | awk '{ printf "k%d:{\"id\": %d, \"body\": \"event %d\", \"amount\": %d.25}\n", $1, $1, $1, $1 % 100 }' |
		kcat -b "$BROKER_BOOTSTRAP" -P -t "$1" -K:
}
