/*
 * harness.c - start, stop and inspect real dafsd daemons for the
 * integration tests (see harness.h for the layout and the cleanup rules).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* Set in the runner by it_base_setup(); forked tests inherit it. */
static char base_dir[PATH_MAX];

uint64_t it_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	if (remove(path) && errno != ENOENT)
		return -1;
	return 0;
}

int it_rmtree(const char *path)
{
	struct stat st;

	if (lstat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	/* a test may leave read-only directories behind: open them up */
	if (S_ISDIR(st.st_mode))
		chmod(path, 0700);
	if (nftw(path, rm_one, 64, FTW_DEPTH | FTW_PHYS) == 0)
		return 0;
	return -errno;
}

int it_join(char *dst, size_t size, const char *a, const char *b)
{
	int n = snprintf(dst, size, "%s/%s", a, b);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

const char *it_base(void)
{
	return base_dir;
}

const char *it_listen(void)
{
	const char *l = getenv("DAFS_IT_LISTEN");

	return l && *l ? l : "tcp://127.0.0.1";
}

const char *it_scheme(void)
{
	static char scheme[16];
	const char *l = it_listen(), *p = strstr(l, "://");
	size_t n = p ? (size_t)(p - l) : 0;

	if (!n || n >= sizeof(scheme))
		return "tcp";
	memcpy(scheme, l, n);
	scheme[n] = '\0';
	return scheme;
}

/* ---- the log ---- */

static char *read_all(const char *path, size_t *len)
{
	char *buf = NULL, *nb;
	size_t cap = 0, n = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	for (;;) {
		if (cap - n < 4096) {
			cap = cap ? cap * 2 : 65536;
			nb = realloc(buf, cap + 1);
			if (!nb)
				break;
			buf = nb;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (buf)
		buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

int it_log_contains(const struct it_daemon *d, const char *needle)
{
	char *log = read_all(d->log_file, NULL);
	int found = log && strstr(log, needle);

	free(log);
	return found;
}

int it_log_sanitizer(const struct it_daemon *d, char *line, size_t size)
{
	static const char *const marks[] = {
		"ERROR: AddressSanitizer",
		"runtime error:",
		"LeakSanitizer",
		"ThreadSanitizer",
	};
	char *log = read_all(d->log_file, NULL), *hit = NULL, *p, *bol, *eol;
	size_t i, n;

	if (!log)
		return 0;
	for (i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
		p = strstr(log, marks[i]);
		if (p && (!hit || p < hit))
			hit = p;
	}
	if (hit && line && size) {
		for (bol = hit; bol > log && bol[-1] != '\n'; bol--)
			;
		eol = strchr(hit, '\n');
		n = eol ? (size_t)(eol - bol) : strlen(bol);
		if (n >= size)
			n = size - 1;
		memcpy(line, bol, n);
		line[n] = '\0';
	}
	free(log);
	return hit != NULL;
}

static void dump_file(const char *path, const char *title, int lines)
{
	char *log = read_all(path, NULL), *p;
	int seen = 0;

	if (!log)
		return;
	p = log + strlen(log);
	while (p > log && seen <= lines) {
		p--;
		if (*p == '\n' && p[1])
			seen++;
	}
	if (*p == '\n')
		p++;
	fprintf(stderr, "# ---- %s (last %d lines) ----\n", title, lines);
	while (*p) {
		char *eol = strchr(p, '\n');
		int n = eol ? (int)(eol - p) : (int)strlen(p);

		fprintf(stderr, "# %.*s\n", n, p);
		p += n + (eol ? 1 : 0);
	}
	free(log);
}

void it_log_dump(const struct it_daemon *d, int lines)
{
	dump_file(d->log_file, d->log_file, lines);
}

/* ---- base directory (runner process) ---- */

void it_base_setup(void)
{
	snprintf(base_dir, sizeof(base_dir), "/tmp/dafs-it.XXXXXX");
	if (!mkdtemp(base_dir)) {
		fprintf(stderr, "# cannot make a directory in /tmp: %s\n",
			strerror(errno));
		base_dir[0] = '\0';
		return;
	}
	chmod(base_dir, 0755);
}

/* Is @pid a live dafsd process (not a zombie)? */
static int is_live_dafsd(pid_t pid)
{
	char path[64], exe[PATH_MAX], want[PATH_MAX], stat[256];
	const char *dafsd = getenv("DAFSD");
	ssize_t n;
	char *rp;
	int fd;

	if (pid <= 0 || !dafsd || !realpath(dafsd, want))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, exe, sizeof(exe) - 1);
	if (n < 0)
		return 0;
	exe[n] = '\0';
	if (strcmp(exe, want))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, stat, sizeof(stat) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	stat[n] = '\0';
	rp = strrchr(stat, ')');
	return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

/*
 * A daemon directory still here belongs to a test that never reached its
 * teardown (it failed, or timed out). Make sure its daemon is gone, say
 * what it logged, and let the caller remove the lot.
 */
static void reap_leftover(const char *dir)
{
	char path[PATH_MAX + 16], buf[32];
	uint64_t until;
	ssize_t n;
	pid_t pid = 0;
	int fd;

	fd = it_join(path, sizeof(path), dir, "pid")
		     ? -1
		     : open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n > 0) {
			buf[n] = '\0';
			pid = (pid_t)atoi(buf);
		}
	}
	if (is_live_dafsd(pid)) {
		fprintf(stderr, "# killing leftover dafsd %d of %s\n", (int)pid,
			dir);
		kill(pid, SIGKILL);
		until = it_now_ms() + 5000;
		while (is_live_dafsd(pid) && it_now_ms() < until)
			sleep_ms(10);
	}
	if (!it_join(path, sizeof(path), dir, "log"))
		dump_file(path, path, 40);
}

void it_base_teardown(void)
{
	char path[PATH_MAX + 256];
	struct dirent *e;
	DIR *dir;

	if (!base_dir[0])
		return;
	dir = opendir(base_dir);
	if (dir) {
		while ((e = readdir(dir))) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", base_dir,
				 e->d_name);
			reap_leftover(path);
		}
		closedir(dir);
	}
	if (it_rmtree(base_dir))
		fprintf(stderr, "# cannot remove %s: %s\n", base_dir,
			strerror(errno));
	base_dir[0] = '\0';
}

/* ---- daemons ---- */

int it_daemon_init(struct it_daemon *d, const char *name)
{
	memset(d, 0, sizeof(*d));
	if (!base_dir[0])
		return -ENOENT;
	if ((size_t)snprintf(d->dir, sizeof(d->dir), "%s/%s.XXXXXX", base_dir,
			     name) >= sizeof(d->dir))
		return -ENAMETOOLONG;
	if (!mkdtemp(d->dir))
		return -errno;
	if (it_join(d->export_dir, sizeof(d->export_dir), d->dir, "export") ||
	    it_join(d->state_dir, sizeof(d->state_dir), d->dir, "state") ||
	    it_join(d->port_file, sizeof(d->port_file), d->dir, "port") ||
	    it_join(d->log_file, sizeof(d->log_file), d->dir, "log"))
		return -ENAMETOOLONG;
	chmod(d->dir, 0755);
	/* the export is world-readable so that other users can walk it */
	if (mkdir(d->export_dir, 0755) || chmod(d->export_dir, 0755) ||
	    mkdir(d->state_dir, 0700))
		return -errno;
	return 0;
}

static int write_pid(const struct it_daemon *d)
{
	char path[PATH_MAX + 16], buf[32];
	int fd, n, rc = 0;

	if (it_join(path, sizeof(path), d->dir, "pid"))
		return -ENAMETOOLONG;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%d\n", (int)d->pid);
	if (write(fd, buf, (size_t)n) != n)
		rc = -EIO;
	close(fd);
	return rc;
}

/* The port, once the port file holds a complete line; 0 before. */
static uint16_t read_port(const char *path)
{
	char buf[32], *end;
	unsigned long v;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (!strchr(buf, '\n'))
		return 0;
	v = strtoul(buf, &end, 10);
	if (end == buf || *end != '\n' || v == 0 || v > 65535)
		return 0;
	return (uint16_t)v;
}

/*
 * The daemon runs through a symlink of its own name: the machine is shared,
 * and a stray "pkill dafsd" elsewhere must not take down the daemon under
 * test (that is how it would look: a test failing for no reason). Its
 * /proc/PID/exe is still $DAFSD.
 */
static int server_link(struct it_daemon *d, const char *dafsd, char *out,
		       size_t size)
{
	char real[PATH_MAX];

	if (!realpath(dafsd, real))
		return -errno;
	if (it_join(out, size, d->dir, "dafs-server"))
		return -ENAMETOOLONG;
	unlink(out);
	return symlink(real, out) ? -errno : 0;
}

int it_daemon_start(struct it_daemon *d)
{
	const char *dafsd = getenv("DAFSD");
	char exp_arg[PATH_MAX + 8], exe[PATH_MAX], listen[128];
	const char *argv[16];
	pid_t pid, parent = getpid();
	uint64_t until;
	int logfd, st, i = 0;

	if (!dafsd || !*dafsd) {
		fprintf(stderr, "# DAFSD is not set (the dafsd to test)\n");
		return -ENOENT;
	}
	if (d->pid)
		return -EBUSY;
	st = server_link(d, dafsd, exe, sizeof(exe));
	if (st) {
		fprintf(stderr, "# %s: %s\n", dafsd, strerror(-st));
		return st;
	}
	snprintf(exp_arg, sizeof(exp_arg), "data=%s", d->export_dir);
	argv[i++] = exe;
	argv[i++] = "--export";
	argv[i++] = exp_arg;
	argv[i++] = "--state-dir";
	argv[i++] = d->state_dir;
	snprintf(listen, sizeof(listen), "%s:0", it_listen());
	argv[i++] = "--listen";
	argv[i++] = listen;
	argv[i++] = "--port-file";
	argv[i++] = d->port_file;
	argv[i++] = "-v";
	for (st = 0; st < 4 && d->extra[st]; st++)
		argv[i++] = d->extra[st];
	argv[i] = NULL;

	unlink(d->port_file);
	logfd = open(d->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
		     0644);
	if (logfd < 0)
		return -errno;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(logfd);
		return -errno;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		/* die with the test, even when it dies on an assertion */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (null < 0 || dup2(null, 0) < 0 || dup2(logfd, 1) < 0 ||
		    dup2(logfd, 2) < 0)
			_exit(127);
		/* nothing of the test (sessions' sockets) leaks in */
		close_range(3, ~0u, 0);
		if (d->nofile_soft) {
			struct rlimit nf = {.rlim_cur = d->nofile_soft,
					    .rlim_max = d->nofile_hard};

			if (setrlimit(RLIMIT_NOFILE, &nf))
				_exit(127);
		}
		/* a crash leaves its core where core_report() looks */
		if (chdir(d->dir) == 0) {
			struct rlimit rl;

			getrlimit(RLIMIT_CORE, &rl);
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_CORE, &rl);
		}
		execv(exe, (char *const *)argv);
		_exit(127);
	}
	close(logfd);
	d->pid = pid;
	write_pid(d);

	/* generous: sanitizer builds start slowly on a busy machine */
	until = it_now_ms() + 30000;
	for (;;) {
		d->port = read_port(d->port_file);
		if (d->port)
			break;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			d->pid = 0;
			fprintf(stderr,
				"# dafsd exited at start (status "
				"%#x)\n",
				st);
			it_log_dump(d, 40);
			return -ECHILD;
		}
		if (it_now_ms() > until) {
			fprintf(stderr, "# dafsd wrote no port file\n");
			it_daemon_stop(d, 1000);
			it_log_dump(d, 40);
			return -ETIMEDOUT;
		}
		sleep_ms(5);
	}
	snprintf(d->url, sizeof(d->url), "%s:%u/data", it_listen(),
		 (unsigned)d->port);
	return 0;
}

/*
 * A daemon that dumped core: print every thread's backtrace (gdb, if there
 * is one) to stderr, so the crash can be diagnosed from the test log even
 * though the core goes with the test's directory.
 */
static void core_report(const struct it_daemon *d, pid_t pid)
{
	char core[PATH_MAX + 32], exe[PATH_MAX + 16],
		bt[] = "thread apply all bt";
	const char *gdb = "/usr/bin/gdb";
	struct stat st;
	pid_t g;

	if (it_join(exe, sizeof(exe), d->dir, "dafs-server"))
		return;
	/* core_pattern "core" or "core.%p" (the kernel's usual ones) */
	if (it_join(core, sizeof(core), d->dir, "core") || stat(core, &st)) {
		snprintf(core, sizeof(core), "%s/core.%d", d->dir, (int)pid);
		if (stat(core, &st)) {
			fprintf(stderr, "# (no core file in %s)\n", d->dir);
			return;
		}
	}
	if (access(gdb, X_OK)) {
		fprintf(stderr, "# core: %s (no gdb for a backtrace)\n", core);
		return;
	}
	fflush(NULL);
	g = fork();
	if (g == 0) {
		dup2(2, 1);
		execl(gdb, gdb, "-batch", "-nx", "-ex", bt, exe, core,
		      (char *)NULL);
		_exit(127);
	}
	if (g > 0)
		while (waitpid(g, NULL, 0) < 0 && errno == EINTR)
			;
}

int it_daemon_stop(struct it_daemon *d, int timeout_ms)
{
	uint64_t until = it_now_ms() + (uint64_t)timeout_ms;
	pid_t r;
	int st;

	if (!d->pid)
		return -ECHILD;
	kill(d->pid, SIGTERM);
	for (;;) {
		r = waitpid(d->pid, &st, WNOHANG);
		if (r == d->pid)
			break;
		if (r < 0 && errno != EINTR) {
			d->pid = 0;
			return -errno;
		}
		if (it_now_ms() > until) {
			fprintf(stderr,
				"# dafsd %d did not stop in %d ms: "
				"killing it\n",
				(int)d->pid, timeout_ms);
			kill(d->pid, SIGKILL);
			while (waitpid(d->pid, &st, 0) < 0 && errno == EINTR)
				;
			d->pid = 0;
			return -ETIMEDOUT;
		}
		sleep_ms(2);
	}
	if (WIFSIGNALED(st) && WCOREDUMP(st))
		core_report(d, d->pid);
	d->pid = 0;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

int it_daemon_alive(const struct it_daemon *d)
{
	siginfo_t si;

	if (!d->pid || kill(d->pid, 0))
		return 0;
	/* kill() succeeds on a zombie: ask whether it has exited */
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)d->pid, &si, WEXITED | WNOHANG | WNOWAIT))
		return 0;
	return si.si_pid == 0;
}

void it_daemon_fini(struct it_daemon *d)
{
	if (d->pid) {
		kill(d->pid, SIGKILL);
		while (waitpid(d->pid, NULL, 0) < 0 && errno == EINTR)
			;
		d->pid = 0;
	}
	if (d->dir[0])
		it_rmtree(d->dir);
	d->dir[0] = '\0';
}

int it_daemon_end(struct it_daemon *d, char *why, size_t size)
{
	char report[512] = "";
	int status, bad;

	status = d->pid ? it_daemon_stop(d, 20000) : 0;
	bad = it_log_sanitizer(d, report, sizeof(report));
	if (status || bad)
		it_log_dump(d, 60);
	it_daemon_fini(d);
	if (status)
		snprintf(why, size, "dafsd exit status %d on SIGTERM", status);
	else if (bad)
		snprintf(why, size, "sanitizer report in the dafsd log: %s",
			 report);
	return status || bad;
}
