/*
 * main.c - dafs-fuse: mount a DAFS export with FUSE. Command line,
 * daemonizing, the libdafs session, the FUSE session and its
 * multi-threaded loop.
 *
 * Order matters: the process forks into the background first (threads do
 * not survive fork, and libdafs runs some), then opens the session and
 * mounts; the parent waits on a pipe for the child's verdict, so a mount
 * that fails (no server, bad export, busy mount point) fails the command
 * with a message on the terminal, as mount(8) would.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "fuse/fs_i.h"

#ifndef DAFS_FUSE_VERSION
#define DAFS_FUSE_VERSION "0"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dafs-fuse URL MOUNTPOINT [-f] [-d] [-o "
		"OPTION[,OPTION...]]\n"
		"\n"
		"Mount the DAFS export URL (tcp://HOST[:PORT]/EXPORT) on "
		"MOUNTPOINT.\n"
		"\n"
		"  -f                   stay in the foreground\n"
		"  -d                   debug: print every FUSE request "
		"(implies -f)\n"
		"  -o OPTIONS           comma-separated mount options:\n"
		"     ro                    read-only (writes fail with "
		"EROFS)\n"
		"     allow_other           let other users in (root, or "
		"user_allow_other\n"
		"                           in /etc/fuse.conf)\n"
		"     default_permissions   let the kernel check permissions "
		"from the mode\n"
		"                           bits (default: the server checks, "
		"as the caller)\n"
		"     attr_timeout=S        cache attributes S seconds "
		"(default 1)\n"
		"     entry_timeout=S       cache names S seconds (default 1)\n"
		"     negative_timeout=S    cache \"no such name\" S seconds "
		"(default 0)\n"
		"     server_timeout=S      fail a request with EIO when the "
		"server does not\n"
		"                           answer in S seconds (default 30)\n"
		"     threads=N             at most N request threads "
		"(default 16)\n"
		"     readahead_kb=N        kernel readahead of the mount "
		"(default 1024, as\n"
		"                           root; 0 leaves the kernel's)\n"
		"     splice                take write data from /dev/fuse by "
		"splice\n"
		"     deleg=on|read|off     ask for write and read, only read, "
		"or no\n"
		"                           delegations (default on)\n"
		"     deleg_timeout=S       attribute timeout while a "
		"delegation is held\n"
		"                           (default 60)\n"
		"     wb_max=MB             hold up to MB of small writes "
		"under write\n"
		"                           delegations (default 64; 0: "
		"off)\n"
		"     wb_behind=N           send 1 MiB writes under write "
		"delegations\n"
		"                           without waiting, N at a time "
		"(default 4; 0: off)\n"
		"     close_behind_us=US    under a write delegation, answer "
		"close before\n"
		"                           sending what it held once "
		"write-backs take\n"
		"                           US or more on average (0: "
		"always; default:\n"
		"                           never)\n"
		"     cache_mb=MB           a data cache of MB in the daemon, "
		"kept across\n"
		"                           opens (default 0: none; 256 with "
		"cache_dir)\n"
		"     cache_dir=DIR         keep the data cache in LMDB in "
		"DIR, "
		"used again\n"
		"                           after a remount if the files did "
		"not change\n"
		"     and FUSE's own: fsname=, subtype=, max_read=, ... (see "
		"mount.fuse3(8))\n"
		"  -h, --help           this text\n"
		"  -V, --version        the version\n"
		"\n"
		"Unmount with: fusermount3 -u MOUNTPOINT. SIGUSR1 logs "
		"statistics.\n");
}

struct cli {
	struct dfs_opts o;
	char *deleg;
	double server_timeout;
	int help, version;
};

enum { KEY_HELP, KEY_VERSION, KEY_FG, KEY_DEBUG, KEY_RO };

/* "name=%fmt" options are scanned into their field; a plain name sets its
 * field to the value given */
static const struct fuse_opt spec[] = {
	{"attr_timeout=%lf", offsetof(struct cli, o.attr_timeout), 0},
	{"entry_timeout=%lf", offsetof(struct cli, o.entry_timeout), 0},
	{"negative_timeout=%lf", offsetof(struct cli, o.negative_timeout), 0},
	{"server_timeout=%lf", offsetof(struct cli, server_timeout), 0},
	{"threads=%d", offsetof(struct cli, o.threads), 0},
	{"readahead_kb=%d", offsetof(struct cli, o.readahead_kb), 0},
	{"splice", offsetof(struct cli, o.splice), 1},
	{"deleg=%s", offsetof(struct cli, deleg), 0},
	{"deleg_timeout=%lf", offsetof(struct cli, o.deleg_timeout), 0},
	{"wb_max=%d", offsetof(struct cli, o.wb_max_mb), 0},
	{"wb_behind=%d", offsetof(struct cli, o.wb_behind), 0},
	{"close_behind_us=%d", offsetof(struct cli, o.close_behind_us), 0},
	{"cache_mb=%d", offsetof(struct cli, o.cache_mb), 0},
	{"cache_dir=%s", offsetof(struct cli, o.cache_dir), 0},
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_KEY("-f", KEY_FG),
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_KEY("debug", KEY_DEBUG),
	FUSE_OPT_KEY("ro", KEY_RO),
	FUSE_OPT_END,
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
	struct cli *c = data;

	(void)out;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (!c->o.url) {
			c->o.url = strdup(arg);
			return c->o.url ? 0 : -1;
		}
		if (!c->o.mountpoint) {
			c->o.mountpoint = strdup(arg);
			return c->o.mountpoint ? 0 : -1;
		}
		fprintf(stderr, "dafs-fuse: unexpected argument \"%s\"\n", arg);
		return -1;
	case KEY_HELP:
		c->help = 1;
		return 0;
	case KEY_VERSION:
		c->version = 1;
		return 0;
	case KEY_FG:
		c->o.foreground = 1;
		return 0;
	case KEY_DEBUG:
		/* kept: libfuse prints the requests */
		c->o.debug = c->o.foreground = 1;
		return 1;
	case KEY_RO:
		/* kept: the kernel mounts read-only as well */
		c->o.ro = 1;
		return 1;
	default:
		/* for libfuse and the kernel */
		return 1;
	}
}

static void log_syslog(enum fuse_log_level level, const char *fmt, va_list ap)
{
	/* fuse_log_level follows syslog's numbering */
	vsyslog((int)level, fmt, ap);
}

/*
 * Fork; the parent waits until the child reports (one byte: 0 mounted,
 * else the exit status) and exits with it. Returns in the child, with
 * *@fd the pipe's write end.
 */
static int background(int *fd)
{
	int p[2];
	unsigned char st = 1;
	pid_t pid;

	if (pipe(p) < 0) {
		perror("dafs-fuse: pipe");
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		perror("dafs-fuse: fork");
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &st, 1) != 1)
			st = 1; /* the child died without a word */
		_exit(st);
	}
	close(p[0]);
	setsid();
	*fd = p[1];
	return 0;
}

static void report(int *fd, unsigned char st)
{
	if (*fd < 0)
		return;
	if (write(*fd, &st, 1) != 1) {
		/* the parent is gone: nobody to tell */
	}
	close(*fd);
	*fd = -1;
}

/* After mounting in the background: no terminal, logs to syslog. */
static void detach(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (chdir("/")) {
		/* "/" always exists */
	}
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	openlog("dafs-fuse", LOG_PID, LOG_DAEMON);
	fuse_set_log_func(log_syslog);
}

/*
 * The kernel starts a FUSE mount with a 128 KiB readahead window; reads of
 * 1 MiB need a bigger one. The mount's backing device is "0:N", the
 * device number that /proc/self/mountinfo shows for the mount point;
 * writing its read_ahead_kb needs root, so failure is only logged.
 */
static void set_readahead(const char *mnt, int kb)
{
	char line[4096], path[128], dev[32], mp[PATH_MAX], *p, *q;
	unsigned int major, minor;
	FILE *f;
	int found = 0;

	if (kb <= 0)
		return;
	f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return;
	while (!found && fgets(line, sizeof(line), f)) {
		/* id parent major:minor root mountpoint ... */
		if (sscanf(line, "%*d %*d %u:%u %*s %4095s", &major, &minor,
			   mp) != 3)
			continue;
		/* undo the \ooo escapes of spaces and such */
		for (p = q = mp; *p; q++) {
			if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' &&
			    p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
			    p[3] <= '7') {
				*q = (char)((p[1] - '0') * 64 +
					    (p[2] - '0') * 8 + (p[3] - '0'));
				p += 4;
			} else {
				*q = *p++;
			}
		}
		*q = '\0';
		/* the last matching line is the mount on top */
		if (!strcmp(mp, mnt) && strstr(line, " - fuse"))
			found = 1;
	}
	fclose(f);
	if (!found)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb",
		 major, minor);
	snprintf(dev, sizeof(dev), "%d\n", kb);
	f = fopen(path, "w");
	if (!f || fputs(dev, f) < 0 || fclose(f)) {
		fuse_log(FUSE_LOG_DEBUG, "dafs-fuse: cannot set %s\n", path);
		if (f)
			fclose(f);
	}
}

/*
 * SIGUSR1 logs one line of statistics. The signal is blocked in every
 * thread and taken by this one with sigwait(), so the work is done
 * outside any signal handler.
 */
struct stats {
	pthread_t thread;
	struct dfs *fs;
	atomic_int quit;
};

static void *stats_main(void *arg)
{
	struct stats *st = arg;
	char line[DFS_STATS_MAX];
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	for (;;) {
		if (sigwait(&set, &sig))
			continue;
		if (atomic_load(&st->quit))
			return NULL;
		dfs_stats(st->fs, line, sizeof(line));
		fuse_log(FUSE_LOG_NOTICE, "dafs-fuse: %s\n", line);
	}
}

/* -o fsname=URL,subtype=dafs,max_read=N ahead of the user's options,
 * which may override them. */
static int mount_opts(struct fuse_args *args, const char *url, uint32_t max_io)
{
	size_t n = strlen(url) + sizeof("fsname=");
	char *opts = NULL, *fsname, buf[64];
	int rc;

	fsname = malloc(n);
	if (!fsname)
		return -1;
	snprintf(fsname, n, "fsname=%s", url);
	/* commas and backslashes in the URL escaped */
	rc = fuse_opt_add_opt_escaped(&opts, fsname);
	free(fsname);
	snprintf(buf, sizeof(buf), "subtype=dafs,max_read=%u", max_io);
	if (!rc)
		rc = fuse_opt_add_opt(&opts, buf);
	if (!rc)
		rc = fuse_opt_insert_arg(args, 1, "-o");
	if (!rc)
		rc = fuse_opt_insert_arg(args, 2, opts);
	free(opts);
	return rc ? -1 : 0;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_loop_config *lc = NULL;
	struct fuse_session *se = NULL;
	dafs_session_opts_t so;
	struct stats stats;
	struct cli c;
	struct dfs fs;
	sigset_t usr1;
	char mnt[PATH_MAX];
	int status = 1, pfd = -1, rc, inited = 0, mounted = 0, sig = 0;
	int stats_on = 0;

	memset(&c, 0, sizeof(c));
	memset(&fs, 0, sizeof(fs));
	c.o.attr_timeout = 1.0;
	c.o.entry_timeout = 1.0;
	c.o.deleg_timeout = 60.0;
	c.o.wb_max_mb = 64;
	c.o.wb_behind = 4;
	c.o.close_behind_us = -1;
	c.o.cache_mb = -1;
	c.o.threads = 16;
	c.o.readahead_kb = 1024;
	c.server_timeout = 30.0;
	if (fuse_opt_parse(&args, &c, spec, opt_proc) < 0) {
		usage(stderr);
		goto out_args;
	}
	if (c.help) {
		usage(stdout);
		status = 0;
		goto out_args;
	}
	if (c.version) {
		printf("dafs-fuse %s (libfuse %s)\n", DAFS_FUSE_VERSION,
		       fuse_pkgversion());
		status = 0;
		goto out_args;
	}
	if (!c.o.url || !c.o.mountpoint) {
		usage(stderr);
		goto out_args;
	}
	c.o.deleg = DFS_DELEG_ON;
	if (c.deleg && !strcmp(c.deleg, "read"))
		c.o.deleg = DFS_DELEG_READ;
	else if (c.deleg && !strcmp(c.deleg, "off"))
		c.o.deleg = DFS_DELEG_OFF;
	else if (c.deleg && strcmp(c.deleg, "on")) {
		fprintf(stderr, "dafs-fuse: deleg wants on, read or off, not "
				"\"%s\"\n",
			c.deleg);
		goto out_args;
	}
	if (c.o.threads < 1 || c.o.threads > 256 || c.o.attr_timeout < 0 ||
	    c.o.entry_timeout < 0 || c.o.negative_timeout < 0 ||
	    c.o.deleg_timeout < 0 || c.o.wb_max_mb < 0 ||
	    c.o.wb_max_mb > 65536 || c.o.wb_behind < 0 || c.o.wb_behind > 64 ||
	    c.o.close_behind_us < -1 || c.o.cache_mb > 1048576 ||
	    c.server_timeout <= 0 || c.server_timeout > 86400) {
		fprintf(stderr, "dafs-fuse: an option is out of range "
				"(threads 1..256, timeouts >= 0, "
				"server_timeout 0..86400)\n");
		goto out_args;
	}
	if (c.o.cache_mb < 0)
		c.o.cache_mb = c.o.cache_dir ? 256 : 0;
	/* the cache directory as an absolute path too (chdir("/") below) */
	if (c.o.cache_dir && c.o.cache_dir[0] != '/') {
		char cwd[PATH_MAX], *abs;

		if (!getcwd(cwd, sizeof(cwd)) ||
		    asprintf(&abs, "%s/%s", cwd, c.o.cache_dir) < 0) {
			fprintf(stderr, "dafs-fuse: cache_dir: %s\n",
				strerror(errno));
			goto out_args;
		}
		free(c.o.cache_dir);
		c.o.cache_dir = abs;
	}
	/* the mount point as an absolute path: we chdir("/") later */
	if (!realpath(c.o.mountpoint, mnt)) {
		fprintf(stderr, "dafs-fuse: %s: %s\n", c.o.mountpoint,
			strerror(errno));
		goto out_args;
	}
	if (!c.o.foreground && background(&pfd))
		goto out_args;
	/* before any thread exists: every thread inherits the mask */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);

	memset(&so, 0, sizeof(so));
	/* one request per worker thread at most, and room for readahead */
	so.credits = c.o.threads > 16 ? (uint32_t)c.o.threads : 16;
	so.timeout_ms = (uint32_t)(c.server_timeout * 1000);
	c.o.timeout_ms = (int)so.timeout_ms;
	/* half the request timeout: another mount's request held up by a
	 * recall of ours (at most our lease) ends well before it times out */
	so.lease_ms = so.timeout_ms / 2 > 1000 ? so.timeout_ms / 2 : 1000;
	rc = dafs_session_open(c.o.url, &so, &fs.s);
	if (rc) {
		fprintf(stderr, "dafs-fuse: %s: %s\n", c.o.url,
			dafs_strerror(rc));
		goto out;
	}
	fs.o = c.o;
	rc = dfs_init(&fs);
	if (rc) {
		fprintf(stderr, "dafs-fuse: setting up: %s\n",
			dafs_strerror(rc));
		goto out;
	}
	inited = 1;
	memset(&stats, 0, sizeof(stats));
	stats.fs = &fs;
	stats_on = !pthread_create(&stats.thread, NULL, stats_main, &stats);
	if (mount_opts(&args, c.o.url, fs.max_io)) {
		fprintf(stderr, "dafs-fuse: out of memory\n");
		goto out;
	}
	se = fuse_session_new(&args, &dfs_ops, sizeof(dfs_ops), &fs);
	if (!se)
		goto out; /* libfuse said why */
	fs.se = se;
	if (fuse_set_signal_handlers(se))
		goto out;
	if (fuse_session_mount(se, mnt))
		goto out;
	mounted = 1;
	set_readahead(mnt, c.o.readahead_kb);
	if (pfd >= 0) {
		detach();
		report(&pfd, 0);
	}

	lc = fuse_loop_cfg_create();
	if (!lc)
		goto out;
	fuse_loop_cfg_set_max_threads(lc, (unsigned int)c.o.threads);
	fuse_loop_cfg_set_clone_fd(lc, 0);
	sig = fuse_session_loop_mt(se, lc);
	/* a signal (SIGTERM, SIGINT, SIGHUP) or an unmount ends the loop */
	status = sig < 0 ? 1 : 0;

out:
	if (lc)
		fuse_loop_cfg_destroy(lc);
	if (se) {
		if (mounted)
			fuse_session_unmount(se);
		fuse_remove_signal_handlers(se);
		/* What is held goes to the server while the recall handler
		 * still sends it before a return: without the handler
		 * libdafs returns a recalled delegation by itself, and a
		 * write held until dfs_fini() would land after another
		 * client was let in. The loop has ended: nothing new is
		 * held. */
		if (inited && fs.s)
			fwb_flush_ino(&fs.wb, FWB_ALL, fs.s, NULL);
		/* no more recalls into a session about to go */
		if (fs.s)
			dafs_set_recall_handler(fs.s, NULL, NULL);
		fs.se = NULL;
		fuse_session_destroy(se);
	}
	if (stats_on) {
		atomic_store(&stats.quit, 1);
		pthread_kill(stats.thread, SIGUSR1);
		pthread_join(stats.thread, NULL);
	}
	if (inited)
		dfs_fini(&fs);
	if (fs.s)
		dafs_session_close(fs.s);
	report(&pfd, (unsigned char)status);
out_args:
	fuse_opt_free_args(&args);
	free(c.o.url);
	free(c.o.mountpoint);
	free(c.deleg);
	free(c.o.cache_dir);
	return status;
}
