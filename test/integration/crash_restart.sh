# Supervisors survive a SIGKILL (which makes the postmaster restart every
# process), stay idle without using CPU, and follow pg_pipeline.enabled.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh

plan 9

q "DROP DATABASE IF EXISTS crash_test" >/dev/null
q "CREATE DATABASE crash_test"
q crash_test "CREATE EXTENSION pg_pipeline"
wait_until 5 has_supervisor crash_test
ok $? "supervisor starts in crash_test"

# idle means asleep on its latch: no CPU at all over a few seconds
pid=$(supervisor_pid crash_test)
launcher=$(q crash_test "SELECT pid FROM pipeline.workers WHERE kind = 'launcher'")
sleep 1
sup_before=$(cpu_ticks "$pid")
launcher_before=$(cpu_ticks "$launcher")
sleep 3
is "$(($(cpu_ticks "$pid") - sup_before))" 0 "an idle supervisor uses no CPU (ticks over 3 s)"
is "$(($(cpu_ticks "$launcher") - launcher_before))" 0 "an idle launcher uses no CPU (ticks over 3 s)"

# SIGKILL of a worker: the postmaster resets shared memory and restarts all
kill -9 "$pid"
sleep 1
wait_until 30 q "SELECT 1"
ok $? "the server accepts connections again after the crash restart"
wait_until 15 has_supervisor crash_test
ok $? "the supervisor runs again after the crash restart"
new_pid=$(supervisor_pid crash_test)
[ -n "$new_pid" ] && [ "$new_pid" != "$pid" ]
ok $? "it is a new process ($pid -> ${new_pid:-none})"
is "$(q crash_test "SELECT count(*) FROM pipeline.workers WHERE kind = 'launcher'")" 1 \
	"the launcher is back too"

# pg_pipeline.enabled = off stops every supervisor, on brings them back
q "ALTER SYSTEM SET pg_pipeline.enabled = off" && q "SELECT pg_reload_conf()" >/dev/null
wait_until 5 has_no_supervisor crash_test
ok $? "pg_pipeline.enabled = off stops the supervisors"
q "ALTER SYSTEM RESET pg_pipeline.enabled" && q "SELECT pg_reload_conf()" >/dev/null
wait_until 5 has_supervisor crash_test
ok $? "turning it on again restarts them"

q "DROP DATABASE crash_test" >/dev/null
done_testing
