# The Kafka test broker's control commands answer clearly, and it stops
# cleanly on SIGTERM.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/broker.sh

plan 6

broker_start orders:2
is "$(broker_cmd topic late 4)" "ok topic late 4" "topics can be created while running"
kcat -b "$BROKER_BOOTSTRAP" -L -t late -m 5 2>&1 | grep -q 'topic "late" with 4 partitions'
ok $? "and clients see them"
is "$(broker_cmd error 1 6 2)" "ok error 1 6 2" "errors can be injected (2 x Fetch NOT_LEADER_OR_FOLLOWER)"
is "$(broker_cmd nonsense)" "error nonsense: unknown command or bad arguments (see --help)" \
	"an unknown command is refused with a reason"
is "$(broker_cmd topic bad 0)" "error topic bad 0: partition count must be between 1 and 10000" \
	"bad arguments are refused with a reason"

kill "$BROKER_PID"
wait "$BROKER_PID"
status=$?
BROKER_PID=
[ "$status" -eq 0 ] && [ ! -e "$BROKER_DIR/bootstrap" ]
ok $? "SIGTERM stops the broker cleanly (exit $status, bootstrap file removed)"
done_testing
