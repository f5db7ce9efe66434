/*
 * swiftprune_internal.h — not part of the ABI. Used by the Swift
 * implementation of swiftprune.h to record the per-thread error message.
 */
#ifndef SWIFTPRUNE_INTERNAL_H
#define SWIFTPRUNE_INTERNAL_H

/** Copies msg (truncated to the buffer) as this thread's sp_last_error(). */
void sp_internal_set_last_error(const char *msg);

#endif
