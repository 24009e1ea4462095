/*
 * strerror.c - one name for every return code of libdafs.
 *
 * Negative errnos are described with glibc's strerrordesc_np(), which
 * returns a static string and, unlike strerror(), never formats into a
 * buffer shared between threads.
 */
#include <limits.h>
#include <string.h>

#include "dafs/dafs.h"
#include "client/api_i.h"

static const char *const dafs_errs[DAFS_ELAST - DAFS_EBASE] = {
	[DAFS_EPROTO - DAFS_EBASE - 1] =
		"protocol error: malformed message (session closed)",
	[DAFS_EBROKEN - DAFS_EBASE - 1] =
		"session broken: connection lost and not recovered",
	[DAFS_EBADSESSION - DAFS_EBASE - 1] =
		"session unknown to the server (expired or destroyed)",
	[DAFS_EBADHANDLE - DAFS_EBASE - 1] =
		"invalid file handle for this export",
	[DAFS_ESEQ - DAFS_EBASE - 1] =
		"request sequence number out of order for its slot",
	[DAFS_ENOEXPORT - DAFS_EBASE - 1] = "no such export on the server",
	[DAFS_EURL - DAFS_EBASE - 1] =
		"malformed URL (expected SCHEME://HOST[:PORT]/EXPORT[/PATH])",
	[DAFS_EBADOPEN - DAFS_EBASE - 1] =
		"open file unknown to the server (closed or expired)",
	[DAFS_EBADCRED - DAFS_EBASE - 1] =
		"credential id not registered in this session",
	[DAFS_EBADKEY - DAFS_EBASE - 1] =
		"remote memory key or range refused by the transport",
	[DAFS_EDELAY - DAFS_EBASE - 1] =
		"server busy with this request slot; retry later",
	[DAFS_EVERSION - DAFS_EBASE - 1] = "incompatible protocol version",
	[DAFS_EBADDELEG - DAFS_EBASE - 1] = "unknown delegation",
	[DAFS_EREVOKED - DAFS_EBASE - 1] = "delegation revoked",
	[DAFS_EDENIED - DAFS_EBASE - 1] =
		"lock denied: another owner holds a conflicting lock",
};

DAFS_API const char *dafs_strerror(int err)
{
	const char *s;

	if (err == 0)
		return "success";
	if (err >= -DAFS_ELAST && err < -DAFS_EBASE) {
		s = dafs_errs[-err - DAFS_EBASE - 1];
		return s ? s : "unknown error";
	}
	/* INT_MIN has no positive counterpart. */
	if (err < 0 && err != INT_MIN) {
		s = strerrordesc_np(-err);
		if (s)
			return s;
	}
	return "unknown error";
}
