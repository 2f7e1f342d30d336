#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include "CLibBPF.h"

/* One message is enough: libbpf logs the specific cause first (a map it
 * could not create, a program the verifier refused), then summaries. */
static char last_message[512];
static pthread_mutex_t last_message_lock = PTHREAD_MUTEX_INITIALIZER;

static int capture(enum libbpf_print_level level, const char *format, va_list args)
{
    if (level == LIBBPF_DEBUG)
        return 0;
    char line[sizeof(last_message)];
    int length = vsnprintf(line, sizeof(line), format, args);
    if (length <= 0)
        return 0;
    size_t end = strlen(line);
    while (end > 0 && (line[end - 1] == '\n' || line[end - 1] == ' '))
        line[--end] = 0;
    const char *text = strncmp(line, "libbpf: ", 8) == 0 ? line + 8 : line;
    /* Logged on every unprivileged attempt, before the real cause; the
     * kernels this runs on account BPF memory to the cgroup anyway. */
    if (strstr(text, "RLIMIT_MEMLOCK"))
        return 0;
    pthread_mutex_lock(&last_message_lock);
    if (last_message[0] == 0)
        memcpy(last_message, text, strlen(text) + 1);
    pthread_mutex_unlock(&last_message_lock);
    return 0;
}

void pb_libbpf_capture_logs(void)
{
    pthread_mutex_lock(&last_message_lock);
    last_message[0] = 0;
    pthread_mutex_unlock(&last_message_lock);
    libbpf_set_print(capture);
}

const char *pb_libbpf_first_message(void)
{
    static __thread char copy[sizeof(last_message)];
    pthread_mutex_lock(&last_message_lock);
    memcpy(copy, last_message, sizeof(copy));
    pthread_mutex_unlock(&last_message_lock);
    return copy;
}
