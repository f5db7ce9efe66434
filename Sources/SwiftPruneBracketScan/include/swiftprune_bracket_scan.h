// The float32 hot loop of the sampled magnitude-mask writer (BracketScan.swift), in C.
#ifndef SWIFTPRUNE_BRACKET_SCAN_H
#define SWIFTPRUNE_BRACKET_SCAN_H

#include <stdbool.h>
#include <stdint.h>

/// The bounds of one scan, all magnitude keys (float bits with the sign bit cleared):
/// `lo <= guess <= hi < 2^31` (the caller clamps an open `hi` to 0x7FFFFFFF).
/// `magnitude_bits` is 0x7FFFFFFF: it reaches the kernel as data so that the compiler cannot
/// prove the keys non-negative, which would make it trade each one-instruction signed compare
/// for an unsigned one AVX2 lacks (two or three instructions).
typedef struct {
    uint32_t magnitude_bits;
    uint32_t lo, guess, hi;
    uint32_t shift;          // histogram buckets of 2^shift keys from lo
    int64_t prefetch_bytes;  // read prefetch distance ahead of the scan (0: none)
} swiftprune_float_bracket;

/// What one scan found: the largest key (NaN/Inf watch), the count below `lo`, the records written.
typedef struct {
    uint32_t worst;
    int64_t below;
    int64_t found;
} swiftprune_bracket_totals;

/// Scans `v[0 ..< covered]` for the largest multiple of 32 `covered <= count` (returned): writes
/// `mask[i] = key > guess` (non-temporal 32-byte stores when `streamed`: `mask` 32-byte aligned, the
/// caller fences), and for every key in `[lo, hi]`, in increasing `i`, its key into `keys`, `mask + i`
/// into `places` and a count into `histogram[(key - lo) >> shift]`. `keys` and `places` need room for `count`
/// entries: the kernel may write one record past the last it counts. Without AVX2 (not x86-64) it
/// covers nothing and the caller's scalar loop does it all.
int64_t swiftprune_scan_float_bracket(const float *v, int64_t count, const swiftprune_float_bracket *bracket,
                                      bool *mask, bool streamed, uint64_t *keys, bool **places,
                                      uint32_t *histogram, swiftprune_bracket_totals *totals);

/// The resolution's decision over one worker's `count` records (keys and mask addresses): a record
/// whose bucket `(key - lo) >> shift` is `chosen` is appended to `bucket_keys`/`bucket_places` at
/// `*gathered` (advanced); any other is settled by its bucket's side of `chosen`, and its mask
/// address is listed at the front of `places` (in place: the list never overtakes the records) when
/// that differs from the provisional byte `key > guess`. Returns the number listed.
int64_t swiftprune_list_bracket_flips(const uint64_t *keys, bool **places, int64_t count, uint64_t lo,
                                      uint32_t shift, uint64_t chosen, uint64_t guess, uint64_t *bucket_keys,
                                      bool **bucket_places, int64_t *gathered);

#endif
