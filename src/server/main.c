/*
 * main.c - dafsd: command line, configuration file, daemonizing, signals.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "server_i.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dafsd [options] --export NAME=PATH ...\n"
		"\n"
		"Export local directories over the DAFS protocol.\n"
		"\n"
		"  -e, --export NAME=PATH   export directory PATH as NAME "
		"(repeatable)\n"
		"  -l, --listen URL         tcp://ADDR:PORT (default "
		"tcp://127.0.0.1:%u)\n"
		"  -c, --config FILE        read options from FILE (one "
		"\"option value\" per line)\n"
		"  -s, --state-dir DIR      persistent state (default "
		"/var/lib/dafsd as root,\n"
		"                           else ~/.local/state/dafsd)\n"
		"  -t, --threads MIN:MAX    handler pool size (default: the "
		"CPUs,\n"
		"                           at least 2 : 16 or twice that)\n"
		"      --credits N          most outstanding requests per "
		"session (default 64)\n"
		"      --max-connections N  refuse connections beyond N "
		"(default 1024)\n"
		"      --lease-ms N         longest lease granted (default "
		"90000)\n"
		"      --deleg on|read|off  delegation grant policy (default "
		"on)\n"
		"      --recall-holdoff-ms N  no grants on a file this long "
		"after a recall\n"
		"                           (default 1000)\n"
		"      --delay-us N         hold each request N us before "
		"handling it:\n"
		"                           a network round trip, emulated "
		"(default 0)\n"
		"      --max-lock-fds N     lock descriptors per session, one "
		"per (owner,\n"
		"                           file, kind) holding locks (default "
		"%u; all\n"
		"                           sessions: half of RLIMIT_NOFILE)\n"
		"      --max-opens N        open files per session (default: "
		"a quarter\n"
		"                           of RLIMIT_NOFILE, at least 1024)\n"
		"      --root-squash        map requests of uid 0 to "
		"nobody\n"
		"      --port-file FILE     write the listening port to FILE\n"
		"  -f, --foreground         stay in the foreground, log to "
		"stderr (default)\n"
		"  -d, --daemon             detach and log to syslog\n"
		"  -v, --verbose            log sessions and connections\n"
		"  -h, --help               this text\n"
		"  -V, --version            the version\n",
		DAFS_DEFAULT_PORT, SRV_LOCKFDS_DEFAULT);
}

static int parse_export(struct srv_config *cfg, const char *arg)
{
	const char *eq = strchr(arg, '=');
	size_t n;

	if (!eq || eq == arg) {
		fprintf(stderr, "dafsd: --export wants NAME=PATH, not \"%s\"\n",
			arg);
		return -1;
	}
	n = (size_t)(eq - arg);
	if (cfg->nexports == SRV_MAX_EXPORTS || n > DAFS_NAME_MAX ||
	    strlen(eq + 1) >= sizeof(cfg->exports[0].path) || memchr(arg, '/', n)) {
		fprintf(stderr, "dafsd: bad export \"%s\" (name without '/', "
				"at most %d exports)\n",
			arg, SRV_MAX_EXPORTS);
		return -1;
	}
	memcpy(cfg->exports[cfg->nexports].name, arg, n);
	cfg->exports[cfg->nexports].name[n] = '\0';
	strcpy(cfg->exports[cfg->nexports].path, eq + 1);
	cfg->nexports++;
	return 0;
}

static int parse_listen(struct srv_config *cfg, const char *arg)
{
	const char *p = strstr(arg, "://"), *host, *colon;
	char *end;
	long port;
	size_t n;

	if (!p || (size_t)(p - arg) >= sizeof(cfg->scheme))
		goto bad;
	memcpy(cfg->scheme, arg, (size_t)(p - arg));
	cfg->scheme[p - arg] = '\0';
	host = p + 3;
	if (*host == '[') {
		colon = strchr(host, ']');
		if (!colon)
			goto bad;
		n = (size_t)(colon - host - 1);
		if (n >= sizeof(cfg->listen_host))
			goto bad;
		memcpy(cfg->listen_host, host + 1, n);
		cfg->listen_host[n] = '\0';
		colon = colon[1] == ':' ? colon + 1 : NULL;
	} else {
		colon = strrchr(host, ':');
		n = colon ? (size_t)(colon - host) : strlen(host);
		if (!n || n >= sizeof(cfg->listen_host))
			goto bad;
		memcpy(cfg->listen_host, host, n);
		cfg->listen_host[n] = '\0';
	}
	cfg->listen_port = DAFS_DEFAULT_PORT;
	if (colon) {
		errno = 0;
		port = strtol(colon + 1, &end, 10);
		if (errno || *end || port < 0 || port > 65535)
			goto bad;
		cfg->listen_port = (uint16_t)port;
	}
	return 0;
bad:
	fprintf(stderr, "dafsd: --listen wants tcp://ADDR:PORT, not \"%s\"\n",
		arg);
	return -1;
}

static int parse_uint(const char *opt, const char *arg, uint32_t lo,
		      uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || *end || end == arg || v < lo || v > hi) {
		fprintf(stderr, "dafsd: %s wants a number in %u..%u, not "
				"\"%s\"\n",
			opt, lo, hi, arg);
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

static const char *port_file;

enum {
	O_CREDITS = 256,
	O_LEASE,
	O_SQUASH,
	O_PORTFILE,
	O_MAXCONN,
	O_DELEG,
	O_HOLDOFF,
	O_DELAY,
	O_LOCKFDS,
	O_MAXOPENS,
};

static const struct option longopts[] = {
	{"export", required_argument, NULL, 'e'},
	{"listen", required_argument, NULL, 'l'},
	{"config", required_argument, NULL, 'c'},
	{"state-dir", required_argument, NULL, 's'},
	{"threads", required_argument, NULL, 't'},
	{"credits", required_argument, NULL, O_CREDITS},
	{"max-connections", required_argument, NULL, O_MAXCONN},
	{"lease-ms", required_argument, NULL, O_LEASE},
	{"deleg", required_argument, NULL, O_DELEG},
	{"recall-holdoff-ms", required_argument, NULL, O_HOLDOFF},
	{"delay-us", required_argument, NULL, O_DELAY},
	{"max-lock-fds", required_argument, NULL, O_LOCKFDS},
	{"max-opens", required_argument, NULL, O_MAXOPENS},
	{"root-squash", no_argument, NULL, O_SQUASH},
	{"port-file", required_argument, NULL, O_PORTFILE},
	{"foreground", no_argument, NULL, 'f'},
	{"daemon", no_argument, NULL, 'd'},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

static int apply_option(struct srv_config *cfg, int c, const char *arg,
			int depth);

/* A config file: "option value" per line (the long option names), '#'
 * comments, blank lines ignored. */
static int read_config(struct srv_config *cfg, const char *path, int depth)
{
	char line[4352], *k, *v, *e;
	const struct option *o;
	int lineno = 0, rc = 0;
	FILE *f;

	if (depth > 4) {
		fprintf(stderr, "dafsd: %s: config files nest too deep\n",
			path);
		return -1;
	}
	f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "dafsd: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (!rc && fgets(line, sizeof(line), f)) {
		lineno++;
		k = line + strspn(line, " \t");
		if (*k == '#' || *k == '\n' || !*k)
			continue;
		e = k + strlen(k);
		while (e > k && (e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		v = k + strcspn(k, " \t=");
		if (*v) {
			*v++ = '\0';
			v += strspn(v, " \t=");
		}
		for (o = longopts; o->name; o++)
			if (!strcmp(o->name, k))
				break;
		if (!o->name || o->val == 'h' || o->val == 'V' ||
		    (o->has_arg && !*v)) {
			fprintf(stderr, "dafsd: %s:%d: bad line \"%s\"\n",
				path, lineno, k);
			rc = -1;
			break;
		}
		rc = apply_option(cfg, o->val, v, depth + 1);
	}
	fclose(f);
	return rc;
}

static int apply_option(struct srv_config *cfg, int c, const char *arg,
			int depth)
{
	uint32_t v;
	char *colon;

	switch (c) {
	case 'e':
		return parse_export(cfg, arg);
	case 'l':
		return parse_listen(cfg, arg);
	case 'c':
		return read_config(cfg, arg, depth);
	case 's':
		if (strlen(arg) >= sizeof(cfg->state_dir))
			return -1;
		strcpy(cfg->state_dir, arg);
		return 0;
	case 't':
		colon = strchr(arg, ':');
		if (colon) {
			*colon = '\0';
			if (parse_uint("--threads", arg, 1, 1024, &v))
				return -1;
			cfg->min_threads = (int)v;
			arg = colon + 1;
		}
		if (parse_uint("--threads", arg, 1, 1024, &v))
			return -1;
		cfg->max_threads = (int)v;
		if (cfg->min_threads > cfg->max_threads)
			cfg->min_threads = cfg->max_threads;
		return 0;
	case O_CREDITS:
		return parse_uint("--credits", arg, 1, 1024,
				  &cfg->limits.credits);
	case O_MAXCONN:
		if (parse_uint("--max-connections", arg, 1, 1000000, &v))
			return -1;
		cfg->max_conns = (int)v;
		return 0;
	case O_LEASE:
		return parse_uint("--lease-ms", arg, 1000, 3600000,
				  &cfg->limits.lease_ms);
	case O_DELEG:
		if (!strcmp(arg, "on"))
			cfg->deleg_policy = DLG_POLICY_ON;
		else if (!strcmp(arg, "read"))
			cfg->deleg_policy = DLG_POLICY_READ;
		else if (!strcmp(arg, "off"))
			cfg->deleg_policy = DLG_POLICY_OFF;
		else {
			fprintf(stderr, "dafsd: --deleg wants on, read or off, "
					"not \"%s\"\n",
				arg);
			return -1;
		}
		return 0;
	case O_HOLDOFF:
		return parse_uint("--recall-holdoff-ms", arg, 0, 3600000,
				  &cfg->holdoff_ms);
	case O_DELAY:
		return parse_uint("--delay-us", arg, 0, 1000000,
				  &cfg->delay_us);
	case O_LOCKFDS:
		return parse_uint("--max-lock-fds", arg, 1, 1u << 20,
				  &cfg->max_lock_fds);
	case O_MAXOPENS:
		return parse_uint("--max-opens", arg, 1, 1u << 24,
				  &cfg->max_opens);
	case O_SQUASH:
		cfg->root_squash = 1;
		return 0;
	case O_PORTFILE:
		port_file = strdup(arg);
		return 0;
	case 'f':
		cfg->foreground = 1;
		return 0;
	case 'd':
		cfg->foreground = 0;
		return 0;
	case 'v':
		cfg->verbose = 1;
		return 0;
	}
	return -1;
}

static void defaults(struct srv_config *cfg)
{
	const char *home = getenv("HOME");
	cpu_set_t cpus;
	long ncpu;

	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->scheme, "tcp");
	strcpy(cfg->listen_host, "127.0.0.1");
	cfg->listen_port = DAFS_DEFAULT_PORT;
	/* as many handlers as CPUs this process may run on; more only for
	 * stalls (server.c) */
	ncpu = sched_getaffinity(0, sizeof(cpus), &cpus) ? 2 : CPU_COUNT(&cpus);
	cfg->min_threads = ncpu < 2 ? 2 : ncpu > 64 ? 64 : (int)ncpu;
	cfg->max_threads = 2 * cfg->min_threads > 16 ? 2 * cfg->min_threads
						     : 16;
	cfg->max_conns = 1024;
	cfg->deleg_policy = DLG_POLICY_ON;
	cfg->holdoff_ms = 1000;
	cfg->max_lock_fds = SRV_LOCKFDS_DEFAULT;
	cfg->foreground = 1;
	if (geteuid() == 0 || !home)
		strcpy(cfg->state_dir, "/var/lib/dafsd");
	else
		snprintf(cfg->state_dir, sizeof(cfg->state_dir),
			 "%s/.local/state/dafsd", home);
	cfg->limits.max_request = (4u << 20) + 4096;
	cfg->limits.max_response = 1u << 20;
	cfg->limits.inline_max = 64u << 10;
	cfg->limits.credits = 64;
	cfg->limits.cb_credits = 4;
	cfg->limits.write_method = DAFS_WRITE_RDMA_READ;
	cfg->limits.lease_ms = 90000;
	cfg->limits.max_io = 1u << 20;
}

/*
 * The soft limit of descriptors up to the hard one: every connection,
 * open file and lock owner of the clients costs the server a descriptor,
 * and the usual soft default (1024) is a small share of what the
 * administrator allows. The server's lock budget is derived from the
 * result (server.c).
 */
static void raise_nofile(void)
{
	struct rlimit rl;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	was = rl.rlim_cur;
	if (rl.rlim_cur == rl.rlim_max) {
		srv_log(LOG_DEBUG, "RLIMIT_NOFILE %llu (the hard limit)",
			(unsigned long long)rl.rlim_cur);
		return;
	}
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		srv_log(LOG_WARNING, "RLIMIT_NOFILE stays %llu: %s",
			(unsigned long long)was, strerror(errno));
	else
		srv_log(LOG_DEBUG, "RLIMIT_NOFILE raised from %llu to %llu",
			(unsigned long long)was,
			(unsigned long long)rl.rlim_cur);
}

static int mkdirs(const char *path)
{
	char tmp[4096], *p;

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct dafs_server *srv;
	struct srv_config cfg;
	sigset_t sigs;
	int c, sig, rc;

	defaults(&cfg);
	while ((c = getopt_long(argc, argv, "e:l:c:s:t:fdvhV", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("dafsd %s (protocol %d)\n", "0.1.0",
			       DAFS_PROTO_VERSION);
			return 0;
		case '?':
			usage(stderr);
			return 2;
		default:
			if (apply_option(&cfg, c, optarg, 0))
				return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "dafsd: unexpected argument \"%s\"\n",
			argv[optind]);
		return 2;
	}
	if (!cfg.nexports) {
		fprintf(stderr, "dafsd: nothing to export: give --export "
				"NAME=PATH (see --help)\n");
		return 2;
	}
	mkdirs(cfg.state_dir);
	srv_log_init(1, cfg.verbose);
	raise_nofile();

	/* every thread inherits this mask; main takes the signals */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = dafs_server_new(&cfg, &srv);
	if (rc)
		return 1;
	if (port_file) {
		FILE *f = fopen(port_file, "w");

		if (!f || fprintf(f, "%u\n", dafs_server_port(srv)) < 0 ||
		    fclose(f)) {
			fprintf(stderr, "dafsd: %s: %s\n", port_file,
				strerror(errno));
			return 1;
		}
	}
	if (!cfg.foreground) {
		if (daemon(0, 0)) {
			fprintf(stderr, "dafsd: daemon: %s\n", strerror(errno));
			return 1;
		}
		srv_log_init(0, cfg.verbose);
	}
	rc = dafs_server_run(srv);
	if (rc) {
		srv_log(LOG_ERR, "cannot start threads: %s", dafs_strerror(rc));
		return 1;
	}
	srv_log(LOG_NOTICE, "serving %d export%s on %s://%s:%u", cfg.nexports,
		cfg.nexports == 1 ? "" : "s", cfg.scheme, cfg.listen_host,
		dafs_server_port(srv));
	do {
		if (sigwait(&sigs, &sig))
			sig = SIGTERM;
	} while (sig == SIGHUP); /* no reload yet; keep running */
	srv_log(LOG_NOTICE, "signal %d: shutting down", sig);
	dafs_server_stop(srv);
	dafs_server_free(srv);
	return 0;
}
