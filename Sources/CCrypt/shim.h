// libxcrypt (Debian's libcrypt-dev): crypt_r verifies bcrypt ($2b$, $2y$) hashes.
#include <crypt.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

// Lowers the priority of the calling thread only, the one that runs bcrypt:
// on Linux a nice value applies to one thread when given its thread ID. Here
// because Swift imports setpriority's first parameter type differently with
// and without _GNU_SOURCE.
static inline int portbudget_nice_calling_thread(int niceness) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), niceness);
}
