# Helpers shared by the benchmarks.
#
# Progress is polled through one long-lived psql session in autocommit: a
# psql started per poll takes CPU from the worker being measured, and a
# transaction held open (a DO loop) would keep HOT pruning from the rows the
# worker rewrites.

# in_bench_cluster SCRIPT ARGS... -- PG_OPTIONS...: outside a cluster, install
# what is missing, build, and run SCRIPT ARGS again inside a throwaway
# cluster with pg_pipeline preloaded and these -o options; inside, return
in_bench_cluster() {
	[ -z "${PG_CLUSTER_CONF_ROOT:-}" ] || return 0
	local script=$1 args=() opts=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
	shift
	for o in "$@"; do opts+=(-o "$o"); done
	bash test/install-deps
	bash test/build >/dev/null
	chmod -R a+rX . 2>/dev/null || true
	exec pg_virtualenv -t -v 15 -o shared_preload_libraries=pg_pipeline "${opts[@]}" bash "$script" "${args[@]}"
}

now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

# poll_open DB: start the polling session
poll_open() {
	coproc POLL { psql -X -At -d "$1"; }
}

# poll QUERY: its one-line result, from the polling session
poll() {
	local reply
	echo "$1;" >&"${POLL[1]}"
	read -r reply <&"${POLL[0]}"
	echo "$reply"
}

poll_close() {
	exec {POLL[1]}>&-
	wait "$POLL_PID" 2>/dev/null || true
}
