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
 *
 * Those are not all the capabilities a permission check may consult: with
 * CAP_SETFCAP a thread may set security.capability on any file it can name
 * (the VFS leaves security.* to the capability check alone), CAP_SYS_ADMIN
 * reads and writes trusted.*, CAP_SYS_RESOURCE passes disk quotas and
 * reserved blocks. So a switch to a non-zero fsuid also empties the
 * thread's effective set (capset(2), which also acts on the calling thread
 * only; the permitted set stays, so the switch back raises it again), and
 * the request runs with exactly the rights of a local process of its user.
 */
#include <errno.h>
#include <linux/capability.h>
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
	bool caps_down; /* the effective capability set is empty */
	uid_t fsuid;
	gid_t fsgid;
	int ngroups; /* -1: not known */
	gid_t groups[CREDS_NGROUPS_MAX];
} cur;

static uid_t own_uid;
static gid_t own_gid;
/* the process's capability sets at start; own_caps_ok: capget worked */
static struct __user_cap_data_struct own_caps[_LINUX_CAPABILITY_U32S_3];
static bool own_caps_ok;

static int cap_get(struct __user_cap_data_struct *d)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};

	return syscall(SYS_capget, &h, d) ? -errno : 0;
}

/* The calling thread's effective set: empty, or all it is permitted. */
static int caps_set(bool up)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	int i;

	if (!own_caps_ok)
		return -EPERM;
	memcpy(d, own_caps, sizeof(d));
	for (i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		d[i].effective = up ? d[i].permitted : 0;
	if (syscall(SYS_capset, &h, d))
		return -errno;
	cur.caps_down = !up;
	return 0;
}

static void read_own(void)
{
	int n = getgroups(0, NULL);

	own_caps_ok = !cap_get(own_caps);
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
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

	pthread_once(&own_once, read_own);
	if (cur.known)
		return;
	/* unreadable counts as down: the next switch raises them first */
	cur.caps_down = cap_get(d) || (!d[0].effective && !d[1].effective);
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
	for (i = 0; i < c->ngroups; i++)
		g[i] = c->groups[i];
	if (groups_are(g, (int)c->ngroups) && cur.fsgid == c->gid &&
	    cur.fsuid == c->uid && cur.caps_down == (c->uid != 0))
		return 0;

	/*
	 * Capabilities up, then groups and gid: they need CAP_SETGID; fsuid
	 * last, and the capabilities dropped after it. On failure the thread
	 * goes back to the server's credentials rather than keep a mixture.
	 */
	if (cur.caps_down) {
		err = caps_set(true);
		if (err)
			goto fail;
	}
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
	/* a root request (not squashed) keeps root's rights */
	if (c->uid != 0) {
		err = caps_set(false);
		if (err)
			goto fail;
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
	/* raising what the thread is permitted cannot fail */
	if (cur.caps_down && caps_set(true))
		cur.known = false;
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
