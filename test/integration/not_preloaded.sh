# Without shared_preload_libraries the extension refuses to load, and says
# how to fix it.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh

plan 3

out=$(with_cluster -- psql -X -q -At -c "CREATE EXTENSION pg_pipeline" 2>&1)
echo "$out" | grep -q 'ERROR:  pg_pipeline must be loaded via shared_preload_libraries'
ok $? "CREATE EXTENSION without preloading fails with a clear error"
echo "$out" | grep -q "HINT:  Add pg_pipeline to shared_preload_libraries"
ok $? "and a hint saying how to fix it"

out=$(with_cluster -- psql -X -q -At -c "LOAD 'pg_pipeline'" 2>&1)
echo "$out" | grep -q 'ERROR:  pg_pipeline must be loaded via shared_preload_libraries'
ok $? "LOAD fails the same way"
done_testing
