# ALTER EXTENSION pg_pipeline UPDATE from every version that has an install
# script to the default version yields the same objects as a fresh install:
# the catalogs of the two databases (every object of the extension, every
# function's definition and settings, every column, constraint, index,
# policy, trigger and privilege in schema pipeline) are compared as text.
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh
. test/lib/pg.sh

current=$(sed -n "s/^default_version = '\(.*\)'/\1/p" pg_pipeline.control)
mapfile -t versions < <(ls pg_pipeline--*.sql | sed -n 's/^pg_pipeline--\([^-]*\)\.sql$/\1/p' | grep -v -x "$current")
if [ ${#versions[@]} -eq 0 ]; then
	# nothing to update from yet: only the catalog query is checked
	plan 1
	diag "no released version before $current: no update to check"
else
	plan $((2 + ${#versions[@]} * 2))
	# every version has an update path to the current one
	paths=$(q "SELECT count(*) FROM pg_extension_update_paths('pg_pipeline') WHERE target = '$current' AND path IS NOT NULL")
	is "$paths" "$(q "SELECT count(*) FROM pg_available_extension_versions WHERE name = 'pg_pipeline' AND version <> '$current'")" \
		"every released version of pg_pipeline ($(q "SELECT string_agg(version, ', ' ORDER BY version) FROM pg_available_extension_versions WHERE name = 'pg_pipeline'")) updates to $current"
fi

catalog="
SELECT 'object ' || pg_describe_object(classid, objid, objsubid) FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_pipeline')
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' ' || pg_get_functiondef(p.oid) || ' ' || coalesce(p.proconfig::text, '')
       || ' ' || coalesce(p.proacl::text, '') || ' ' || coalesce(obj_description(p.oid, 'pg_proc'), '')
  FROM pg_proc p WHERE p.pronamespace = 'pipeline'::regnamespace AND p.prokind <> 'a'
UNION ALL
SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
       || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'pipeline'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' ' || c.relrowsecurity || ' ' || coalesce(c.relacl::text, '')
       || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '')
       || ' ' || CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) ELSE '' END
  FROM pg_class c WHERE c.relnamespace = 'pipeline'::regnamespace
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'pipeline'::regnamespace
UNION ALL
SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relnamespace = 'pipeline'::regnamespace
UNION ALL
SELECT 'policy ' || schemaname || '.' || tablename || ' ' || policyname || ' ' || cmd || ' ' || coalesce(qual, '') || ' '
       || coalesce(with_check, '') FROM pg_policies WHERE schemaname = 'pipeline'
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'pipeline'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'event trigger ' || evtname || ' ' || evtevent || ' ' || evtfoid::regproc FROM pg_event_trigger
ORDER BY 1"

fresh_database upgrade_fresh
q upgrade_fresh "$catalog" >/tmp/pipeline_catalog_fresh
like "$(wc -l </tmp/pipeline_catalog_fresh)" '^[0-9]{3,}$' "the catalog of a fresh install is read ($(wc -l </tmp/pipeline_catalog_fresh) lines)"
for version in "${versions[@]}"; do
	fresh_database upgrade_from
	q upgrade_from "DROP EXTENSION pg_pipeline; CREATE EXTENSION pg_pipeline VERSION '$version'" >/dev/null
	q upgrade_from "ALTER EXTENSION pg_pipeline UPDATE" >/dev/null
	is "$(q upgrade_from "SELECT extversion FROM pg_extension WHERE extname = 'pg_pipeline'")" "$current" \
		"$version updates to $current"
	q upgrade_from "$catalog" >/tmp/pipeline_catalog_updated
	diff /tmp/pipeline_catalog_fresh /tmp/pipeline_catalog_updated >/tmp/pipeline_catalog_diff
	same=$?
	ok $same "$version updated to $current has the same objects as a fresh install"
	[ $same = 0 ] || diag "$(head -n 40 /tmp/pipeline_catalog_diff)"
	q "DROP DATABASE upgrade_from WITH (FORCE)" >/dev/null
done
q "DROP DATABASE upgrade_fresh WITH (FORCE)" >/dev/null
rm -f /tmp/pipeline_catalog_fresh /tmp/pipeline_catalog_updated /tmp/pipeline_catalog_diff
done_testing
