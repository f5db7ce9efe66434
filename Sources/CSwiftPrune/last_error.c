/* The per-thread last-error slot behind sp_last_error(). It lives in C
 * because C has portable thread-local storage and Swift has none without
 * Foundation. */
#include "swiftprune.h"
#include "swiftprune_internal.h"

#include <string.h>

static _Thread_local char last_error[1024];
static _Thread_local int32_t last_errno;

const char *sp_last_error(void) { return last_error; }

int32_t sp_last_errno(void) { return last_errno; }

void sp_internal_set_last_errno(int32_t code) { last_errno = code; }

void sp_internal_set_last_error(const char *msg) {
    if (msg == NULL) {
        last_error[0] = '\0';
        return;
    }
    strncpy(last_error, msg, sizeof last_error - 1);
    last_error[sizeof last_error - 1] = '\0';
}
