#!/usr/bin/env bash
# Scheduler benchmark, beside pg_cron (Debian's postgresql-15-cron, preloaded
# in the same cluster):
#   (1) start latency from the scheduled time, p50 and p99, of JOBS jobs
#       scheduled every second (pg_cron has no seconds schedule);
#   (2) the same for jobs scheduled every minute, in both;
#   (3) CPU used by the idle scheduler with 10,000 defined jobs, in both.
#
#   bash bench/scheduler.sh [JOBS] [SECONDS]     (default 100 jobs, 20 s)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PG_CLUSTER_CONF_ROOT:-}" ]; then
	bash test/install-deps
	if ! dpkg-query -W -f='${Status}' postgresql-15-cron 2>/dev/null | grep -q 'install ok installed'; then
		SUDO=
		[ "$(id -u)" -eq 0 ] || SUDO=sudo
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql-15-cron >/dev/null
	fi
	bash test/build >/dev/null
	chmod -R a+rX . 2>/dev/null || true
	exec pg_virtualenv -t -v 15 -o "shared_preload_libraries=pg_pipeline,pg_cron" \
		-o cron.database_name=bench -o cron.use_background_workers=on \
		-o max_worker_processes=200 -o cron.max_running_jobs=100 \
		bash "$0" "$@"
fi

JOBS=${1:-100}
SECONDS_RUN=${2:-20}
. test/lib/pg.sh

echo "scheduler: $JOBS jobs every second for $SECONDS_RUN s; per-minute jobs in both; idle CPU with 10,000 jobs; $(nproc) cores, $(date -u +%Y-%m-%d)"
q "CREATE DATABASE bench" >/dev/null
q bench "CREATE EXTENSION pg_pipeline; CREATE EXTENSION pg_cron"
q "CREATE ROLE bencher LOGIN" >/dev/null
q bench "GRANT USAGE ON SCHEMA cron TO bencher"

percentiles() { # QUERY returning latencies in ms
	q bench "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY l)::numeric, 1) || ' ms / ' ||
	                round(percentile_cont(0.99) WITHIN GROUP (ORDER BY l)::numeric, 1) || ' ms (' || count(*) || ' runs)'
	           FROM ($1) x(l)"
}

# (1) every second
psql -X -q -d bench -c "SET ROLE bencher" \
	-c "SELECT pipeline.schedule_job('s' || i, '* * * * * *', 'SELECT 1') FROM generate_series(1, $JOBS) i" >/dev/null
sleep "$SECONDS_RUN"
q bench "UPDATE pipeline.jobs SET enabled = false" >/dev/null
sleep 3
every_second=$(percentiles "SELECT extract(epoch FROM started_at - scheduled_for) * 1000 FROM pipeline.job_runs WHERE state = 'succeeded'")
skipped=$(q bench "SELECT count(*) FILTER (WHERE state = 'skipped') || ' skipped of ' || count(*) FROM pipeline.job_runs")
q bench "DELETE FROM pipeline.job_runs; DELETE FROM pipeline.jobs" >/dev/null

# (2) every minute, both, over two minute boundaries
psql -X -q -d bench -c "SET ROLE bencher" \
	-c "SELECT pipeline.schedule_job('m' || i, '* * * * *', 'SELECT 1') FROM generate_series(1, 20) i" >/dev/null
q bench "SELECT cron.schedule('c' || i, '* * * * *', 'SELECT 1') FROM generate_series(1, 20) i" >/dev/null
sleep $((120 - $(date +%S) + 5))
q bench "UPDATE pipeline.jobs SET enabled = false; SELECT cron.unschedule(jobid) FROM cron.job" >/dev/null
sleep 3
ours_minute=$(percentiles "SELECT extract(epoch FROM started_at - scheduled_for) * 1000 FROM pipeline.job_runs WHERE state = 'succeeded'")
cron_minute=$(percentiles "SELECT extract(epoch FROM start_time - date_trunc('minute', start_time)) * 1000 FROM cron.job_run_details WHERE status = 'succeeded'")
q bench "DELETE FROM pipeline.job_runs; DELETE FROM pipeline.jobs" >/dev/null

# (3) idle CPU with 10,000 jobs (yearly: none fires during the measure)
psql -X -q -d bench -c "SET ROLE bencher" \
	-c "SELECT pipeline.schedule_job('y' || i, '0 0 1 1 *', 'SELECT 1') FROM generate_series(1, 10000) i" >/dev/null
q bench "SELECT cron.schedule('y' || i, '0 0 1 1 *', 'SELECT 1') FROM generate_series(1, 10000) i" >/dev/null
sleep 2
supervisor=$(supervisor_pid bench)
launcher=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'")
s0=$(cpu_ticks "$supervisor"); c0=$(cpu_ticks "$launcher")
sleep 30
s1=$(cpu_ticks "$supervisor"); c1=$(cpu_ticks "$launcher")
hz=$(getconf CLK_TCK)

echo "(1) pg_pipeline, $JOBS jobs every second: start latency p50 / p99: $every_second; $skipped"
echo "(2) every minute, 20 jobs each: pg_pipeline $ours_minute; pg_cron $cron_minute"
awk -v a="$s0" -v b="$s1" -v c="$c0" -v d="$c1" -v hz="$hz" 'BEGIN {
	printf "(3) idle CPU over 30 s with 10,000 jobs: pg_pipeline supervisor %.2f %%, pg_cron launcher %.2f %%\n",
		(b - a) / hz / 30 * 100, (d - c) / hz / 30 * 100 }'
