/*
 * url.c - parse "SCHEME://HOST[:PORT]/EXPORT[/PATH]" into a dafs_url_t.
 *
 * The parser works on the caller's string in one pass and fills a local
 * copy, so that *u is only written when the whole URL is good. There is no
 * percent-decoding: file names may contain '%', '?' or '#', and the CLI
 * passes them through literally. "." and ".." in PATH are kept; resolving
 * them against the export is the caller's business (the export is a root
 * nothing may climb out of, and only the client knows its symlinks).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

#include "dafs/dafs.h"
#include "client/api_i.h"

/* Longest DNS label; a longer one can never resolve. */
#define LABEL_MAX 63

static bool host_char(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_';
}

/* A host name or IPv4 address: letters, digits, '-', '_', '.', no empty
 * label except that one trailing dot (a fully qualified name) is fine. */
static bool host_ok(const char *h, size_t len)
{
	size_t i, label = 0;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		if (!host_char(h[i]))
			return false;
		if (h[i] != '.') {
			if (++label > LABEL_MAX)
				return false;
			continue;
		}
		if (label == 0)
			return false;
		label = 0;
	}
	return true;
}

/*
 * A bracketed IPv6 literal's contents, with an optional zone ("%eth0", or
 * RFC 6874's "%25eth0"). The zone is stored as "%eth0", the form
 * getaddrinfo() understands.
 */
static bool ipv6_ok(const char *h, size_t len, char *out, size_t outsz)
{
	struct in6_addr a;
	char addr[INET6_ADDRSTRLEN + 1];
	const char *pct = memchr(h, '%', len);
	size_t alen = pct ? (size_t)(pct - h) : len;
	size_t zlen = 0, i;
	const char *zone = NULL;

	if (alen == 0 || alen >= sizeof(addr))
		return false;
	memcpy(addr, h, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET6, addr, &a) != 1)
		return false;
	if (pct) {
		zone = pct + 1;
		zlen = len - alen - 1;
		if (zlen > 2 && zone[0] == '2' && zone[1] == '5') {
			zone += 2;
			zlen -= 2;
		}
		if (zlen == 0)
			return false;
		for (i = 0; i < zlen; i++)
			if (!isalnum((unsigned char)zone[i]) &&
			    !strchr("-._~", zone[i]))
				return false;
	}
	if (alen + (pct ? 1 + zlen : 0) >= outsz)
		return false;
	memcpy(out, addr, alen);
	if (pct) {
		out[alen] = '%';
		memcpy(out + alen + 1, zone, zlen);
	}
	out[alen + (pct ? 1 + zlen : 0)] = '\0';
	return true;
}

/* Decimal 1..65535, digits only (no sign, no spaces). */
static bool port_ok(const char *p, size_t len, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (unsigned long)(p[i] - '0');
		if (v > 65535)
			return false;
	}
	if (v == 0)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* Copy PATH (starting at a '/') collapsing "//" and dropping a trailing
 * '/'; the result is "" or "/a/b". */
static bool path_ok(const char *p, char *out, size_t outsz)
{
	size_t n = 0;

	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		if (n + 1 >= outsz)
			return false;
		out[n++] = '/';
		while (*p && *p != '/') {
			if (n + 1 >= outsz)
				return false;
			out[n++] = *p++;
		}
	}
	out[n] = '\0';
	return true;
}

DAFS_API int dafs_url_parse(const char *url, dafs_url_t *u)
{
	dafs_url_t v;
	const char *p, *sep, *host, *end;
	size_t len, i;

	if (!url || !u)
		return -DAFS_EURL;
	memset(&v, 0, sizeof(v));
	v.port = DAFS_DEFAULT_PORT;

	/* Scheme: case-insensitive as in RFC 3986, stored in lower case. */
	sep = strstr(url, "://");
	if (!sep)
		return -DAFS_EURL;
	len = (size_t)(sep - url);
	if (len == 0 || len >= sizeof(v.scheme))
		return -DAFS_EURL;
	for (i = 0; i < len; i++)
		v.scheme[i] = (char)tolower((unsigned char)url[i]);
	if (strcmp(v.scheme, "tcp") != 0 && strcmp(v.scheme, "rdma") != 0)
		return -DAFS_EURL;

	/* Host. */
	p = sep + 3;
	if (*p == '[') {
		host = p + 1;
		end = strchr(host, ']');
		if (!end)
			return -DAFS_EURL;
		if (!ipv6_ok(host, (size_t)(end - host), v.host,
			     sizeof(v.host)))
			return -DAFS_EURL;
		p = end + 1;
	} else {
		host = p;
		len = strcspn(host, ":/");
		if (len >= sizeof(v.host) || !host_ok(host, len))
			return -DAFS_EURL;
		memcpy(v.host, host, len);
		v.host[len] = '\0';
		p = host + len;
	}

	/* Optional port. */
	if (*p == ':') {
		len = strcspn(p + 1, "/");
		if (!port_ok(p + 1, len, &v.port))
			return -DAFS_EURL;
		p += 1 + len;
	}

	/* Export: exactly one non-empty component, and a real name. */
	if (*p != '/')
		return -DAFS_EURL;
	p++;
	len = strcspn(p, "/");
	if (len == 0 || len >= sizeof(v.export_))
		return -DAFS_EURL;
	if ((len == 1 && p[0] == '.') || (len == 2 && !strncmp(p, "..", 2)))
		return -DAFS_EURL;
	memcpy(v.export_, p, len);
	v.export_[len] = '\0';
	p += len;

	if (!path_ok(p, v.path, sizeof(v.path)))
		return -DAFS_EURL;

	memcpy(u, &v, sizeof(*u));
	return 0;
}
