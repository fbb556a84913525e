# The Kafka test broker: kcat produces to it and consumes the same messages
# back over TCP, and fault commands take brokers down and up.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/broker.sh

plan 9

broker_start -n 3 events:3 other:1
[[ "$BROKER_BOOTSTRAP" =~ ^127\.0\.0\.1:[0-9]+(,127\.0\.0\.1:[0-9]+){2}$ ]]
ok $? "three brokers listen on loopback ($BROKER_BOOTSTRAP)"

meta=$(kcat -b "$BROKER_BOOTSTRAP" -L -m 5 2>&1)
echo "$meta" | grep -q 'topic "events" with 3 partitions'
ok $? "topic events was created with 3 partitions"

# 1000 keyed messages, spread over the partitions by key
seq 1 1000 | awk '{ print "key" $1 ":{\"n\":" $1 "}" }' >"$BROKER_DIR/sent"
kcat -b "$BROKER_BOOTSTRAP" -P -t events -K: -l "$BROKER_DIR/sent" 2>"$BROKER_DIR/kcat.err"
ok $? "kcat produces 1000 messages"

kcat -b "$BROKER_BOOTSTRAP" -C -t events -o beginning -e -q -f '%k:%s\n' \
	2>>"$BROKER_DIR/kcat.err" | sort >"$BROKER_DIR/received"
sort "$BROKER_DIR/sent" | cmp -s - "$BROKER_DIR/received"
ok $? "kcat consumes exactly the same 1000 messages back"

partitions=$(kcat -b "$BROKER_BOOTSTRAP" -C -t events -o beginning -e -q -f '%p\n' | sort -u | wc -l)
is "$partitions" 3 "the messages landed in all 3 partitions"

is "$(broker_cmd down -1)" "ok down -1" "fault command: all brokers down"
kcat -b "$BROKER_BOOTSTRAP" -L -t events -m 2 >/dev/null 2>&1
[ $? -ne 0 ]
ok $? "clients cannot reach a cluster that is down"

is "$(broker_cmd up -1)" "ok up -1" "fault command: brokers up again"
kcat -b "$BROKER_BOOTSTRAP" -C -t events -o beginning -e -q -c 10 >/dev/null 2>&1
ok $? "clients reconnect after the outage"

broker_stop
done_testing
