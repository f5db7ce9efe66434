// Cache prefetch hints for the Swift kernels. Swift cannot call the
// `__builtin_prefetch` builtin, and `_mm_prefetch` is a C macro it does not
// import; these static inline wrappers are imported and inlined instead.
// A prefetch never faults and retires at once: unlike an ordinary load used
// to "touch" memory, a miss does not hold up the instructions after it.
#ifndef SWIFTPRUNE_PREFETCH_H
#define SWIFTPRUNE_PREFETCH_H

/// Brings the cache line holding `address` into every cache level (prefetcht0), for reading.
static inline __attribute__((always_inline)) void swiftprune_prefetch_read(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

/// Brings the cache line holding `address` into the caches for writing
/// (prefetchw where the CPU has it, prefetcht0 otherwise).
static inline __attribute__((always_inline)) void swiftprune_prefetch_write(const void *address) {
    __builtin_prefetch(address, 1, 3);
}

/// Brings the cache line holding `address` into L2 only (prefetcht1), for
/// reading: data needed a little later, which must not evict what L1 holds now.
static inline __attribute__((always_inline)) void swiftprune_prefetch_read_l2(const void *address) {
    __builtin_prefetch(address, 0, 2);
}

#endif
