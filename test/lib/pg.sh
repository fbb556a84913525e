# Helpers for tests that run inside the test cluster (pg_virtualenv exports
# PGHOST, PGPORT, PGUSER and PGPASSWORD).

# q [DB] SQL: one value, unaligned, quiet
q() {
	local db=postgres
	if [ $# -gt 1 ]; then db=$1; shift; fi
	psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "$1"
}

# supervisor_pid DB: pid of the supervisor of DB, empty if none
supervisor_pid() {
	q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_pipeline supervisor' AND datname = '$1'"
}

has_supervisor() { [ -n "$(supervisor_pid "$1")" ]; }
has_no_supervisor() { [ -z "$(supervisor_pid "$1")" ]; }

# CPU ticks (user + system) a process has used so far
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# the server log of the cluster pg_virtualenv -t made
server_log() { echo "$(dirname "$PG_CLUSTER_CONF_ROOT")/log/postgresql-15-regress.log"; }

# free_port: a TCP port on loopback that nothing listens on
free_port() {
	local port
	for port in $(seq 5440 5540); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
			[ ! -e "/var/run/postgresql/.s.PGSQL.$port" ]; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

# with_cluster [pg_virtualenv -o options...] -- COMMAND...: run COMMAND
# against a second throwaway cluster with its own settings
with_cluster() {
	local opts=()
	while [ "$1" != "--" ]; do opts+=("$1"); shift; done
	shift
	local create="-p $(free_port)"
	# a sanitizer run (test/run) preloads its runtime into every server
	[ -n "${PG_PIPELINE_SERVER_ENV:-}" ] && create+=" --environment=$PG_PIPELINE_SERVER_ENV"
	pg_virtualenv -t -v 15 -c "$create" "${opts[@]}" "$@"
}

# source_workers DB: pids of the Kafka source workers of DB
source_workers() {
	q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_pipeline kafka source' AND datname = '$1'"
}

# restart_cluster [MODE]: stop the test cluster (fast, immediate) and start it
restart_cluster() {
	pg_ctlcluster 15 regress stop -m "${1:-fast}" && pg_ctlcluster 15 regress start
}

# wait_for_sql SECONDS DB QUERY: true once QUERY (a boolean) returns t
wait_for_sql() {
	local deadline=$((SECONDS + $1))
	until [ "$(q "$2" "$3" 2>/dev/null)" = t ]; do
		[ "$SECONDS" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}

# the number of Kafka source workers in the current database, as SQL
WORKER_COUNT="(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_pipeline kafka source' AND datname = current_database())"

# fresh_database DB: an empty database DB with pg_pipeline installed
fresh_database() {
	q "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1
	q "CREATE DATABASE $1" && q "$1" "CREATE EXTENSION pg_pipeline"
}
