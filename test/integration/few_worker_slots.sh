# A max_worker_processes too small for a supervisor gives a clear log
# message and a slow retry, never a crash or restart loop.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh

plan 4

check() {
	. test/lib/tap.sh
	. test/lib/pg.sh
	q "CREATE EXTENSION pg_pipeline"
	launcher=$(q "SELECT pid FROM pipeline.workers WHERE kind = 'launcher'")
	sleep 6
	log=$(server_log)
	grep -q 'could not start pg_pipeline supervisor for database "postgres": no free background worker slot' "$log"
	ok $? "the log says which supervisor could not start and why"
	grep -q 'HINT:  Raise max_worker_processes (currently 1)' "$log"
	ok $? "with a hint naming max_worker_processes"
	attempts=$(grep -c 'could not start pg_pipeline supervisor' "$log")
	[ "$attempts" -ge 1 ] && [ "$attempts" -le 5 ]
	ok $? "retries back off ($attempts attempts in 6 s)"
	is "$(q "SELECT pid FROM pipeline.workers WHERE kind = 'launcher'")" "$launcher" \
		"the launcher keeps running (no restart loop)"
}
export -f check
# max_worker_processes=1: the launcher takes the only slot
# (a cluster that fails to start leaves the plan unmet, which fails the test)
with_cluster -o shared_preload_libraries=pg_pipeline -o max_worker_processes=1 -o max_logical_replication_workers=0 -- bash -c check
