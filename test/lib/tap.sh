# Minimal TAP producer for the integration tests (run by prove).
# Source it, call plan N, then ok/is/wait_until; exit status follows failures.

TAP_COUNT=0
TAP_FAILED=0

plan() { echo "1..$1"; }

diag() { printf '# %s\n' "$@" >&2; }

ok() { # ok CONDITION_EXIT_STATUS DESCRIPTION
	TAP_COUNT=$((TAP_COUNT + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $TAP_COUNT - $2"
	else
		echo "not ok $TAP_COUNT - $2"
		TAP_FAILED=$((TAP_FAILED + 1))
	fi
}

is() { # is GOT EXPECTED DESCRIPTION
	if [ "$1" = "$2" ]; then
		ok 0 "$3"
	else
		ok 1 "$3"
		diag "     got: '$1'" "expected: '$2'"
	fi
}

like() { # like GOT REGEX DESCRIPTION
	if [[ "$1" =~ $2 ]]; then
		ok 0 "$3"
	else
		ok 1 "$3"
		diag "     got: '$1'" "expected to match: '$2'"
	fi
}

# wait_until SECONDS COMMAND...: true once COMMAND succeeds, false after SECONDS
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -ge "$deadline" ] && return 1
		sleep 0.1
	done
}

done_testing() { [ "$TAP_FAILED" -eq 0 ]; }
