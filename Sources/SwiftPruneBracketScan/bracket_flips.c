// The decision loop of the sampled magnitude writer's resolution (BracketResolution.swift), in C:
// declared in include/swiftprune_bracket_scan.h. Compiled from Swift, the loop kept its flip count
// on the stack and branched on it (perf annotate: about half of the resolution's samples). The gain
// of this C loop alone was not measured: it came with the scan and sample changes of round 10.
#include "swiftprune_bracket_scan.h"

int64_t swiftprune_list_bracket_flips(const uint64_t *keys, bool **places, int64_t count, uint64_t lo,
                                      uint32_t shift, uint64_t chosen, uint64_t guess, uint64_t *bucket_keys,
                                      bool **bucket_places, int64_t *gathered) {
    int64_t flips = 0, taken = *gathered;
    for (int64_t c = 0; c < count; c++) {
        const uint64_t key = keys[c], side = (key - lo) >> shift;
        bool *const place = places[c];
        if (side == chosen) {
            bucket_keys[taken] = key;
            bucket_places[taken] = place;
            taken += 1;
        } else {
            places[flips] = place;
            flips += (side > chosen) != (key > guess);
        }
    }
    *gathered = taken;
    return flips;
}
