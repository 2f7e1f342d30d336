// The namespace-file ioctls (linux/nsfs.h): ioctl() is variadic, which
// Swift cannot call, so each request is wrapped in a function of its own.
#pragma once
#include <sys/ioctl.h>
#include <sys/types.h>
#include <linux/nsfs.h>

// A descriptor of the user namespace that owns the namespace `fd` names, or -1 with errno.
static inline int pb_ns_get_userns(int fd) { return ioctl(fd, NS_GET_USERNS); }

// The uid that created the user namespace `fd` names; -1 with errno on failure.
static inline int pb_ns_get_owner_uid(int fd, uid_t *uid) { return ioctl(fd, NS_GET_OWNER_UID, uid); }
