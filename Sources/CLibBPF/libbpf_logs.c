#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include "CLibBPF.h"

/* One message is enough: the loader reports the first line that explains a
 * failed load, and libbpf logs that line just before it returns the error. */
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
    pthread_mutex_lock(&last_message_lock);
    memcpy(last_message, line, end + 1);
    pthread_mutex_unlock(&last_message_lock);
    return 0;
}

void pb_libbpf_capture_logs(void)
{
    libbpf_set_print(capture);
}

const char *pb_libbpf_last_message(void)
{
    static __thread char copy[sizeof(last_message)];
    pthread_mutex_lock(&last_message_lock);
    memcpy(copy, last_message, sizeof(copy));
    pthread_mutex_unlock(&last_message_lock);
    return copy;
}
