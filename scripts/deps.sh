#!/bin/sh
# deps.sh [bench] - install what dafs needs to build and test, from Debian's
# packages, only where it is missing. Safe to run again.
#
# "bench" adds, as optional packages, what bench/fuse-compare.sh compares
# dafs-fuse with: sshfs and an sshd to serve it over loopback, and fio.
# They are not installed for the tests: openssh-server brings a system
# service (the bench starts a private sshd of its own on 127.0.0.1 and
# never the system's).
set -eu

# rdma-core: headers and libraries for the verbs transport (without them
# it builds as a stub), the rdma-core base and the user-space providers
# (librxe for Soft-RoCE among them) it needs at run time.
PKGS="gcc clang meson ninja-build pkg-config check libsubunit-dev \
liblmdb-dev libfuse3-dev fuse3 libibverbs-dev librdmacm-dev rdma-core \
ibverbs-providers libclang-rt-dev procps attr libcap2-bin make"
# for tests that skip a step, with a message, without them
OPTIONAL="postmark"
if [ "${1:-}" = bench ]; then
	OPTIONAL="$OPTIONAL sshfs openssh-server fio"
fi

missing=""
for p in $PKGS $OPTIONAL; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "dafs: installing:$missing" >&2
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "dafs: need root (or sudo) to install:$missing" >&2
		exit 1
	fi
else
	SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
required=""
for p in $missing; do
	case " $OPTIONAL " in
	*" $p "*)
		$SUDO apt-get install -y -qq --no-install-recommends "$p" \
			>/dev/null 2>&1 ||
			echo "dafs: optional package $p not available" >&2
		;;
	*) required="$required $p" ;;
	esac
done
[ -z "$required" ] && exit 0
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $required >/dev/null
