/*
 * swiftprune_internal.h — not part of the ABI. Used by the Swift
 * implementation of swiftprune.h to record the per-thread error message.
 */
#ifndef SWIFTPRUNE_INTERNAL_H
#define SWIFTPRUNE_INTERNAL_H

#include <stdint.h>

/** Copies msg (truncated to the buffer) as this thread's sp_last_error(). */
void sp_internal_set_last_error(const char *msg);

/** Records this thread's sp_last_errno() (0 for failures that are not SP_ERR_OS). */
void sp_internal_set_last_errno(int32_t code);

#endif
