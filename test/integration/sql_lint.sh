# Static checks of the extension scripts for the security rules in
# CONTRIBUTING.md (pgspot is not in Debian; this stands in for it).
set -uo pipefail
cd "$(dirname "$0")/../.."
. test/lib/tap.sh

scripts=(pg_pipeline--*.sql)
plan $((${#scripts[@]} * 6 + 1))

for f in "${scripts[@]}"; do
	first=$(grep -v -E '^\s*(--.*|/\*.*\*/)?\s*$' "$f" | head -n 1)
	[[ "$first" == '\echo Use "'*'" to load this file. \quit' ]]
	ok $? "$f starts with the \\echo ... \\quit guard"

	! grep -n -i -E 'or\s+replace' "$f"
	ok $? "$f has no CREATE OR REPLACE"

	! grep -n -i -E 'if\s+not\s+exists' "$f"
	ok $? "$f has no IF NOT EXISTS"

	grep -q -E '^SET LOCAL search_path TO pg_catalog, pg_temp;' "$f"
	ok $? "$f pins its own search_path"

	functions=$(grep -c -i -E '^\s*CREATE\s+FUNCTION' "$f")
	pinned=$(grep -c -E '^SET search_path = pg_catalog, pg_temp$' "$f")
	is "$pinned" "$functions" "$f: every function has SET search_path = pg_catalog, pg_temp"

	revoked=$(grep -c -E '^REVOKE ALL ON FUNCTION .* FROM PUBLIC;' "$f")
	is "$revoked" "$functions" "$f: every function's privileges are revoked from PUBLIC first"
done

control=$(sed -n "s/^default_version = '\(.*\)'/\1/p" pg_pipeline.control)
meta=$(sed -n 's/^   "version": "\(.*\)",/\1/p' META.json | head -n 1)
[ -f "pg_pipeline--$control.sql" ] && [ "$meta" = "$control" ]
ok $? "control ($control), META.json ($meta) and install script agree on the version"
done_testing
