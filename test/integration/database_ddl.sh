# Database DDL that needs a database without other connections works on a
# database with a supervisor, and the launcher follows what it changes.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh

plan 19

for db in ddl_test ddl_copy ddl_renamed; do q "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1; done
q "CREATE DATABASE ddl_test"
q ddl_test "CREATE EXTENSION pg_pipeline"
wait_until 5 has_supervisor ddl_test
ok $? "supervisor starts in ddl_test"

# doomed statements must not stop anything: any role could loop them
pid=$(supervisor_pid ddl_test)
q "DROP ROLE IF EXISTS ddl_mallory" >/dev/null 2>&1
q "CREATE ROLE ddl_mallory CREATEDB"
q "SET ROLE ddl_mallory; DROP DATABASE ddl_test" >/dev/null 2>&1
q "SET ROLE ddl_mallory; ALTER DATABASE ddl_test RENAME TO ddl_x" >/dev/null 2>&1
q "SET ROLE ddl_mallory; CREATE DATABASE ddl_y TEMPLATE ddl_test" >/dev/null 2>&1
psql -X -q -d postgres -c "BEGIN" -c "DROP DATABASE ddl_test" >/dev/null 2>&1
sleep 1.5
is "$(supervisor_pid ddl_test)" "$pid" "DDL that fails for lack of privilege leaves the supervisor alone"
q "DROP ROLE ddl_mallory"

# a prepared transaction reports its extension DDL when it commits
q ddl_test "DROP EXTENSION pg_pipeline"
wait_until 5 has_no_supervisor ddl_test
ok $? "DROP EXTENSION stops the supervisor"
psql -X -q -d ddl_test -c "BEGIN" -c "CREATE EXTENSION pg_pipeline" -c "PREPARE TRANSACTION 'ddl_ext'"
sleep 1.5
has_no_supervisor ddl_test
ok $? "a prepared, uncommitted CREATE EXTENSION starts no supervisor"
q ddl_test "COMMIT PREPARED 'ddl_ext'"
wait_until 5 has_supervisor ddl_test
ok $? "COMMIT PREPARED of a CREATE EXTENSION starts it"

out=$(q "CREATE DATABASE ddl_copy TEMPLATE ddl_test" 2>&1)
ok $? "CREATE DATABASE ... TEMPLATE a database with a supervisor works${out:+: $out}"
wait_until 10 has_supervisor ddl_copy
ok $? "the copy has the extension, so it gets a supervisor too"
wait_until 10 has_supervisor ddl_test
ok $? "the template's supervisor comes back afterwards"

out=$(q "ALTER DATABASE ddl_copy RENAME TO ddl_renamed" 2>&1)
ok $? "ALTER DATABASE ... RENAME works${out:+: $out}"
wait_until 10 has_supervisor ddl_renamed
ok $? "the renamed database has its supervisor back"

# SET TABLESPACE moves the files, which needs the database to itself
space=$(mktemp -d)
chown "$(stat -c %U "$(q "SHOW data_directory")")" "$space"
q "CREATE TABLESPACE ddl_space LOCATION '$space'"
out=$(q "ALTER DATABASE ddl_renamed SET TABLESPACE ddl_space" 2>&1)
ok $? "ALTER DATABASE ... SET TABLESPACE works${out:+: $out}"
wait_until 10 has_supervisor ddl_renamed
ok $? "and the supervisor comes back after the move"

q "ALTER DATABASE ddl_renamed ALLOW_CONNECTIONS false"
wait_until 5 has_no_supervisor ddl_renamed
ok $? "a database that refuses connections loses its supervisor"
q "ALTER DATABASE ddl_renamed ALLOW_CONNECTIONS true"
wait_until 5 has_supervisor ddl_renamed
ok $? "and gets it back when it accepts them again"

q "ALTER DATABASE ddl_renamed IS_TEMPLATE true"
wait_until 5 has_no_supervisor ddl_renamed
ok $? "a template database has no supervisor (it would block CREATE DATABASE)"
q "ALTER DATABASE ddl_renamed IS_TEMPLATE false"
wait_until 5 has_supervisor ddl_renamed
ok $? "and gets it back when it is no longer a template"

# DROP DATABASE must not wait for (or fail because of) the supervisor
out=$(q "DROP DATABASE ddl_renamed" 2>&1)
ok $? "DROP DATABASE of a database with a supervisor succeeds${out:+: $out}"
out=$(q "DROP DATABASE ddl_test WITH (FORCE)" 2>&1)
ok $? "so does DROP DATABASE ... WITH (FORCE)${out:+: $out}"
sleep 2
is "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_pipeline supervisor' AND datname LIKE 'ddl%'")" 0 \
	"no supervisor is left for the dropped databases"

q "DROP TABLESPACE ddl_space"
rm -rf "$space"
done_testing
