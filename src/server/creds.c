/*
 * creds.c - per-thread file-system credentials.
 *
 * Linux keeps credentials per thread; it is glibc that makes setuid() and
 * setgroups() process-wide (it signals every thread to repeat the call). The
 * raw system calls change the calling thread only, which is what a pool of
 * handlers serving different users at once needs. Only the fs ids and the
 * supplementary groups change: the real and effective ids stay root, so the
 * thread can always switch back, and a non-zero fsuid makes the kernel drop
 * the file-system capabilities (CAP_DAC_OVERRIDE, CAP_CHOWN, CAP_MKNOD ...)
 * of that thread until the fsuid is 0 again.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "server/creds_i.h"

/* 32-bit ids: on some ABIs the plain numbers are the old 16-bit calls. */
#ifdef SYS_setfsuid32
#define NR_SETFSUID SYS_setfsuid32
#define NR_SETFSGID SYS_setfsgid32
#define NR_SETGROUPS SYS_setgroups32
#else
#define NR_SETFSUID SYS_setfsuid
#define NR_SETFSGID SYS_setfsgid
#define NR_SETGROUPS SYS_setgroups
#endif

#define CREDS_NGROUPS_MAX 32

/*
 * The process's own effective ids and supplementary groups, read once
 * before this module first changes any thread's credentials; afterwards a
 * thread's getgroups() only tells what it was switched to.
 */
static pthread_once_t own_once = PTHREAD_ONCE_INIT;
static gid_t *own_groups;    /* lives as long as the process */
static int own_ngroups = -1; /* -1: could not be read: reset clears them */

static int set_groups(size_t n, const gid_t *g)
{
	if (syscall(NR_SETGROUPS, n, g) < 0)
		return -errno;
	return 0;
}

/*
 * setfsuid() and setfsgid() return the previous id whether or not they
 * succeeded; a second call with an invalid id (-1) changes nothing and tells
 * what the id now is.
 */
static int set_fsuid(uid_t uid)
{
	syscall(NR_SETFSUID, uid);
	return (uid_t)syscall(NR_SETFSUID, (uid_t)-1) == uid ? 0 : -EPERM;
}

static int set_fsgid(gid_t gid)
{
	syscall(NR_SETFSGID, gid);
	return (gid_t)syscall(NR_SETFSGID, (gid_t)-1) == gid ? 0 : -EPERM;
}

/*
 * What the calling thread's credentials are now, so that a switch to what
 * is already in force costs nothing: every change of an id or of the
 * groups is a prepare_creds/commit_creds in the kernel, about 2 us here,
 * and a request used to pay six (15 us with the checks, more than a whole
 * getattr round trip). Read from the kernel on the thread's first switch
 * (a thread inherits its creator's credentials, whatever they were) and
 * again after a failure.
 */
static __thread struct {
	bool known;
	uid_t fsuid;
	gid_t fsgid;
	int ngroups; /* -1: not known */
	gid_t groups[CREDS_NGROUPS_MAX];
} cur;

static uid_t own_uid;
static gid_t own_gid;

static void read_own(void)
{
	int n = getgroups(0, NULL);

	own_uid = geteuid();
	own_gid = getegid();
	if (n <= 0) {
		own_ngroups = n < 0 ? -1 : 0;
		return;
	}
	own_groups = malloc((size_t)n * sizeof(*own_groups));
	if (!own_groups)
		return;
	n = getgroups(n, own_groups);
	own_ngroups = n < 0 ? -1 : n;
}

int dafs_creds_can_switch(void)
{
	pthread_once(&own_once, read_own);
	return own_uid == 0;
}

static void learn_cur(void)
{
	pthread_once(&own_once, read_own);
	if (cur.known)
		return;
	cur.fsuid = (uid_t)syscall(NR_SETFSUID, (uid_t)-1);
	cur.fsgid = (gid_t)syscall(NR_SETFSGID, (gid_t)-1);
	cur.ngroups = getgroups(CREDS_NGROUPS_MAX, cur.groups);
	cur.known = true;
}

/* The thread's groups are the @n of @g (n < 0: unknown, never equal). */
static bool groups_are(const gid_t *g, int n)
{
	int i;

	if (n < 0 || cur.ngroups != n)
		return false;
	for (i = 0; i < n; i++)
		if (cur.groups[i] != g[i])
			return false;
	return true;
}

int dafs_creds_apply(const struct dafs_creds *c)
{
	gid_t g[CREDS_NGROUPS_MAX];
	uint32_t i;
	int err;

	if (c->ngroups > CREDS_NGROUPS_MAX || c->uid == (uint32_t)-1 ||
	    c->gid == (uint32_t)-1)
		return -EINVAL;
	if (!dafs_creds_can_switch())
		return 0;
	learn_cur();

	/*
	 * Groups and gid first: they need CAP_SETGID, which a non-zero fsuid
	 * keeps, but doing them while still fully privileged is the order
	 * that cannot trip over a capability. On failure the thread goes back
	 * to the server's credentials rather than keep a mixture.
	 */
	for (i = 0; i < c->ngroups; i++)
		g[i] = c->groups[i];
	if (!groups_are(g, (int)c->ngroups)) {
		err = set_groups(c->ngroups, g);
		if (err)
			goto fail;
		memcpy(cur.groups, g, c->ngroups * sizeof(*g));
		cur.ngroups = (int)c->ngroups;
	}
	if (cur.fsgid != c->gid) {
		err = set_fsgid(c->gid);
		if (err)
			goto fail;
		cur.fsgid = c->gid;
	}
	if (cur.fsuid != c->uid) {
		err = set_fsuid(c->uid);
		if (err)
			goto fail;
		cur.fsuid = c->uid;
	}
	return 0;

fail:
	/* what the thread has is read again: reset changes all that differs */
	cur.known = false;
	dafs_creds_reset();
	return err;
}

/*
 * Back to the server's own credentials, changing only what differs (fsuid
 * first: returning it to 0 gives the thread its file-system capabilities
 * back, so open_by_handle_at works again; resetting to our own ids cannot
 * fail for root). The groups go back too: on a local file system the
 * server's fsuid passes every check by capability whatever the groups, but
 * not where capabilities do not reach (an export on a root-squashed NFS
 * mount, files of ids unmapped in a user namespace), and there the last
 * user's groups must not decide what the server itself may do.
 */
void dafs_creds_reset(void)
{
	if (!dafs_creds_can_switch())
		return;
	learn_cur();
	if (cur.fsuid != own_uid) {
		set_fsuid(own_uid);
		cur.fsuid = own_uid;
	}
	if (cur.fsgid != own_gid) {
		set_fsgid(own_gid);
		cur.fsgid = own_gid;
	}
	if (!groups_are(own_groups, own_ngroups)) {
		set_groups(own_ngroups < 0 ? 0 : (size_t)own_ngroups,
			   own_groups);
		cur.known = false; /* read again at the next switch */
	}
}
