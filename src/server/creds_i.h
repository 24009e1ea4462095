/*
 * creds_i.h - per-thread file-system credentials for dafsd's handlers.
 *
 * Run as root, dafsd executes each request with its session's credentials:
 * setfsuid/setfsgid and the supplementary groups are set on the calling
 * thread only (raw syscalls; glibc's setgroups() would change every thread).
 * A non-zero fsuid drops the file-system capabilities, so the kernel's own
 * permission checks apply exactly as for a local process of that user.
 * Run as a user, dafs_creds_apply() does nothing: the export is that user's.
 */
#ifndef DAFS_CREDS_I_H
#define DAFS_CREDS_I_H

#include <stdint.h>

struct dafs_creds {
	uint32_t uid, gid;
	uint32_t ngroups;
	uint32_t groups[32];
};

/* Non-zero when the process can switch credentials (it is root). */
int dafs_creds_can_switch(void);
/* Switch the calling thread to @c. Returns 0 or -EPERM / -EINVAL. */
int dafs_creds_apply(const struct dafs_creds *c);
/* Return the calling thread to the process's own credentials. */
void dafs_creds_reset(void);

#endif /* DAFS_CREDS_I_H */
