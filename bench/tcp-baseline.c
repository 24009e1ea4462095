/*
 * tcp-baseline.c - the reference figures dafs is measured against, taken in
 * the same run: raw single-stream loopback TCP bandwidth, and a raw TCP
 * ping-pong with the message sizes of a DAFS request and reply.
 *
 *   tcp-baseline stream MBYTES BLOCK    -> "stream BLOCK MB/s"
 *   tcp-baseline pingpong REQ REP N     -> "pingpong REQ REP usec/rtt"
 *   tcp-baseline spinpong REQ REP N     -> "spinpong REQ REP usec/rtt"
 *
 * pingpong blocks in recv(), so on an idle machine it pays the wake-up of
 * a sleeping CPU (about 70 us here) on every message; spinpong polls with
 * MSG_DONTWAIT and yields, as dafs's completion wait does, which makes it
 * the strict reference for dafs's round trips.
 *
 * Both ends run in this process (a thread is the peer), over 127.0.0.1 with
 * TCP_NODELAY, as dafs does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int spin; /* poll instead of blocking in recv() */

static int full_io(int fd, void *buf, size_t len, int wr)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = wr ? send(fd, (char *)buf + done, len - done, MSG_NOSIGNAL)
		       : recv(fd, (char *)buf + done, len - done,
			      spin ? MSG_DONTWAIT : 0);
		if (n < 0 && spin && !wr && errno == EAGAIN) {
			sched_yield();
			continue;
		}
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

struct peer {
	int lfd;
	int mode; /* 0 stream sink, 1 ping-pong echo */
	size_t a, b;
	long n;
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	size_t cap = p->a > p->b ? p->a : p->b;
	char *buf = malloc(cap);
	int fd = accept(p->lfd, NULL, NULL);
	long i;

	if (fd < 0 || !buf)
		die("accept");
	nodelay(fd);
	if (p->mode == 0) {
		while (recv(fd, buf, cap, 0) > 0)
			;
		/* acknowledge the end, so the sender times delivery */
		full_io(fd, buf, 1, 1);
	} else {
		for (i = 0; i < p->n; i++) {
			if (full_io(fd, buf, p->a, 0) || full_io(fd, buf, p->b, 1))
				break;
		}
	}
	close(fd);
	free(buf);
	return NULL;
}

static int setup(struct peer *p, pthread_t *t)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int fd;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (p->lfd < 0 || bind(p->lfd, (void *)&sa, sizeof(sa)) ||
	    listen(p->lfd, 1) || getsockname(p->lfd, (void *)&sa, &sl))
		die("listen");
	pthread_create(t, NULL, peer_main, p);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (void *)&sa, sizeof(sa)))
		die("connect");
	nodelay(fd);
	return fd;
}

int main(int argc, char **argv)
{
	struct peer p = {0};
	pthread_t t;
	double t0, t1;
	char *buf;
	int fd;
	long i;

	if (argc == 4 && !strcmp(argv[1], "stream")) {
		size_t total = strtoull(argv[2], NULL, 0) << 20;
		size_t block = strtoull(argv[3], NULL, 0), done;

		p.mode = 0;
		p.a = p.b = block;
		fd = setup(&p, &t);
		buf = calloc(1, block);
		t0 = now();
		for (done = 0; done < total; done += block)
			if (full_io(fd, buf, block, 1))
				die("send");
		shutdown(fd, SHUT_WR);
		full_io(fd, buf, 1, 0);
		t1 = now();
		printf("stream %zu %.1f MB/s\n", block,
		       (double)total / (t1 - t0) / 1e6);
	} else if (argc == 5 && (!strcmp(argv[1], "pingpong") ||
				 !strcmp(argv[1], "spinpong"))) {
		spin = argv[1][0] == 's';
		p.mode = 1;
		p.a = strtoull(argv[2], NULL, 0);
		p.b = strtoull(argv[3], NULL, 0);
		p.n = strtol(argv[4], NULL, 0);
		fd = setup(&p, &t);
		buf = calloc(1, p.a > p.b ? p.a : p.b);
		for (i = 0; i < p.n / 10; i++) /* warm up, not timed */
			if (full_io(fd, buf, p.a, 1) || full_io(fd, buf, p.b, 0))
				die("pingpong");
		t0 = now();
		for (; i < p.n; i++)
			if (full_io(fd, buf, p.a, 1) || full_io(fd, buf, p.b, 0))
				die("pingpong");
		t1 = now();
		printf("%s %zu %zu %.1f usec/rtt\n", argv[1], p.a, p.b,
		       (t1 - t0) * 1e6 / (double)(p.n - p.n / 10));
	} else {
		fprintf(stderr, "usage: tcp-baseline stream MBYTES BLOCK\n"
				"       tcp-baseline pingpong|spinpong REQ REP N\n");
		return 2;
	}
	close(fd);
	pthread_join(t, NULL);
	free(buf);
	return 0;
}
