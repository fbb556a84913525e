/*
 * Preloaded after libasan into the PostgreSQL server of a sanitizer run
 * (test/sanitize/setup).
 *
 * Why: the server links libgpg-error (through libldap and GnuTLS), whose
 * constructor calls bindtextdomain().  That malloc()s while holding glibc's
 * gettext lock, and the first malloc starts the ASan runtime, which looks up
 * the optional symbol swift_demangle with dlsym().  Its failure message is
 * translated through gettext, which takes and releases the same lock inside
 * the writer's hold; the lock's state is then wrong and the server's own
 * bindtextdomain() waits for ever.  With the symbol present the lookup
 * succeeds and gettext is never entered.
 *
 * Sanitizer reports ask it to demangle every function name first: NULL
 * means "not a Swift name", and the C++ demangler is tried next.
 */
#include <stddef.h>

char	   *swift_demangle(const char *mangled, size_t mangled_length,
						   char *output, size_t *output_length,
						   unsigned int flags);

char *
swift_demangle(const char *mangled, size_t mangled_length,
			   char *output, size_t *output_length, unsigned int flags)
{
	return NULL;
}
